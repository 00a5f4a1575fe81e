// The one error type of the host's page-fusion boundary, with a closed code,
// and how each code crosses the wire when a guest caused it.
import type { ErrorCode } from '@memballoon/protocol';

/** Every reason a page-fusion call of the host can fail. */
export const FUSION_ERROR_CODES = [
  // A guest's SharedRegion frames do not form a region (gap, mismatch, bad size).
  'invalid_region',
  // A guest hinted more pages than the host keeps for one VM.
  'too_many_pages',
  // KSM cannot be driven here (not Linux, no KSM, not root, another driver).
  'ksm_unavailable',
  // Reading or writing /sys/kernel/mm/ksm failed.
  'ksm_io',
] as const;

/** A closed code of FusionError. */
export type FusionErrorCode = (typeof FUSION_ERROR_CODES)[number];

/** The error of the host's page-fusion layer. */
export class FusionError extends Error {
  /** Why it failed; one of FUSION_ERROR_CODES. */
  readonly code: FusionErrorCode;

  constructor(code: FusionErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FusionError';
    this.code = code;
  }

  /** Normalises anything thrown into a FusionError of the given code. */
  static from(err: unknown, code: FusionErrorCode): FusionError {
    if (err instanceof FusionError) return err;
    return new FusionError(code, err instanceof Error ? err.message : String(err), { cause: err });
  }

  /** The protocol error code to answer a guest with. */
  get wireCode(): ErrorCode {
    return this.code === 'too_many_pages' ? 'out_of_range' : this.code === 'invalid_region' ? 'invalid_argument' : 'internal';
  }
}
