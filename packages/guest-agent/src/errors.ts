// The agent's one error type: a closed code, a message, and the cause; where
// the host refused, the protocol's code too.
import type { ErrorCode } from '@memballoon/protocol';

/** Every way the agent's public surface can fail. */
export const AGENT_ERROR_CODES = [
  'invalid_config',
  'target_out_of_range',
  'domain_unavailable',
  'protocol',
  'rejected',
  'timeout',
  'closed',
  'worker_failed',
  // Page fusion: data given to registerSharedRegion cannot be a region (empty, wrong type, too large).
  'invalid_region',
  // Page fusion: a --share-file could not be opened or read.
  'file_unreadable',
  'internal',
] as const;

/** A closed set of agent error codes. */
export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[number];

/** The error of the guest agent's boundary (library and CLI). */
export class AgentError extends Error {
  override readonly name = 'AgentError';
  /** The host's protocol error code, when the host refused the agent or reported an error (code `rejected`). */
  readonly hostCode: ErrorCode | undefined;

  constructor(
    readonly code: AgentErrorCode,
    message: string,
    options?: { cause?: unknown; hostCode?: ErrorCode },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.hostCode = options?.hostCode;
  }

  /** Normalises anything thrown into an AgentError (unknown errors become `fallback`). */
  static from(err: unknown, fallback: AgentErrorCode = 'internal'): AgentError {
    if (err instanceof AgentError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new AgentError(fallback, message, { cause: err });
  }
}
