/**
 * Error codes that cross the wire. The TypeScript side uses these names; the
 * wire carries the numbers of the ErrorCode enum in the .proto.
 */
export const ERROR_CODES = [
  'unspecified',
  'malformed_frame',
  'unsupported_version',
  'out_of_range',
  'invalid_argument',
  'unexpected_message',
  'unknown_vm',
  'auth_failed',
  'already_connected',
  'pool_exhausted',
  'rate_limited',
  'timeout',
  'frame_too_large',
  'shutting_down',
  'internal',
  'out_of_order',
] as const;

/** A closed set of protocol error codes. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Tells whether a string is one of the protocol's error codes. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** The one error type of the protocol boundary: a closed code and a message. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';

  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Normalises anything thrown into a ProtocolError (unknown errors become `internal`). */
  static from(err: unknown, fallback: ErrorCode = 'internal'): ProtocolError {
    if (err instanceof ProtocolError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new ProtocolError(fallback, message, { cause: err });
  }
}
