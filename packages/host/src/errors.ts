// The one error type of the host's boundaries (admin API, balloonctl, pool):
// a closed code enum that maps onto HTTP statuses in one place. Protocol
// errors that cross the guest wire stay ProtocolError (@memballoon/protocol).

/** Closed set of host error codes; the admin API sends them as `error.code`. */
export const HOST_ERROR_CODES = [
  'not_found',
  'already_exists',
  'vm_running',
  'not_running',
  'invalid_argument',
  'out_of_range',
  'pool_exhausted',
  'unauthorized',
  'forbidden',
  'timeout',
  'storage',
  'internal',
] as const;

/** One of the host's error codes. */
export type HostErrorCode = (typeof HOST_ERROR_CODES)[number];

/** HTTP status of each code: the admin API's only mapping from errors to statuses. */
export const HTTP_STATUS_OF: Readonly<Record<HostErrorCode, number>> = Object.freeze({
  not_found: 404,
  already_exists: 409,
  vm_running: 409,
  not_running: 409,
  invalid_argument: 400,
  out_of_range: 400,
  pool_exhausted: 409,
  unauthorized: 401,
  forbidden: 403,
  timeout: 504,
  storage: 503,
  internal: 500,
});

/** Tells whether a value is one of the host's error codes. */
export function isHostErrorCode(value: unknown): value is HostErrorCode {
  return typeof value === 'string' && (HOST_ERROR_CODES as readonly string[]).includes(value);
}

/** An error of the host with a closed code, a one-line message and a cause. */
export class HostError extends Error {
  override readonly name = 'HostError';

  constructor(
    readonly code: HostErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The HTTP status the admin API answers this error with. */
  get httpStatus(): number {
    return HTTP_STATUS_OF[this.code];
  }

  /** Normalises anything thrown into a HostError (SQLite errors become `storage`). */
  static from(err: unknown): HostError {
    if (err instanceof HostError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const sqliteCode = (err as { code?: unknown } | null)?.code;
    if (typeof sqliteCode === 'string' && sqliteCode.startsWith('SQLITE_')) {
      return new HostError('storage', `the VM registry could not be written (${sqliteCode}): ${message}`, { cause: err });
    }
    return new HostError('internal', message, { cause: err });
  }
}
