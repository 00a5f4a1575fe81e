// The one error type of the agent's page-fusion boundary, with a closed code.
// Callers branch on `code`; the message is for people.

/** Every reason a page-fusion call of the agent can fail. */
export const FUSION_ERROR_CODES = [
  // The data given to registerSharedRegion cannot be a region (empty, wrong type, too large).
  'invalid_region',
  // A --share-file could not be opened or read.
  'file_unreadable',
] as const;

/** A closed code of FusionError. */
export type FusionErrorCode = (typeof FUSION_ERROR_CODES)[number];

/** The error of the agent's page-fusion layer. */
export class FusionError extends Error {
  /** Why it failed; one of FUSION_ERROR_CODES. */
  readonly code: FusionErrorCode;

  constructor(code: FusionErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FusionError';
    this.code = code;
  }

  /** Normalises anything thrown into a FusionError (unknown errors become `invalid_region`). */
  static from(err: unknown, code: FusionErrorCode = 'invalid_region'): FusionError {
    if (err instanceof FusionError) return err;
    return new FusionError(code, err instanceof Error ? err.message : String(err), { cause: err });
  }
}
