// The one error type of the host package (admin API, service, pool, page
// fusion, balloonctl): a closed code set, and one table that says how each
// code answers over HTTP and, when a guest caused it, on the guest wire.
// Protocol errors of the guest wire itself stay ProtocolError
// (@memballoon/protocol); HostError.wireCode turns a host error into one.
import type { ErrorCode } from '@memballoon/protocol';
import { CgroupError, type CgroupErrorCode } from './cgroup/errors.js';

/** What each code means: its HTTP status, and its protocol code when a guest is told. */
const CODES = {
  // The admin API and the service.
  not_found: { httpStatus: 404, wireCode: 'unknown_vm' },
  already_exists: { httpStatus: 409, wireCode: 'already_connected' },
  vm_running: { httpStatus: 409, wireCode: 'internal' },
  // A guest hears it only when it went away while its admission waited.
  not_running: { httpStatus: 409, wireCode: 'timeout' },
  invalid_argument: { httpStatus: 400, wireCode: 'invalid_argument' },
  out_of_range: { httpStatus: 400, wireCode: 'out_of_range' },
  pool_exhausted: { httpStatus: 409, wireCode: 'pool_exhausted' },
  unauthorized: { httpStatus: 401, wireCode: 'auth_failed' },
  // The read-only token asked for a change.
  forbidden: { httpStatus: 403, wireCode: 'auth_failed' },
  method_not_allowed: { httpStatus: 405, wireCode: 'unexpected_message' },
  // Busy or shutting down: try again later (dashboard clients, the kernel's cgroup files).
  unavailable: { httpStatus: 503, wireCode: 'shutting_down' },
  timeout: { httpStatus: 504, wireCode: 'timeout' },
  // The VM registry could not be written (locked, disk full).
  storage: { httpStatus: 503, wireCode: 'internal' },
  // A file the host trusts (admin.token) is unsafe or unusable: fix it, then start again.
  unsafe_file: { httpStatus: 500, wireCode: 'internal' },
  internal: { httpStatus: 500, wireCode: 'internal' },
  // Page fusion: a guest's SharedRegion frames do not form a region, or hint too many pages.
  invalid_region: { httpStatus: 400, wireCode: 'invalid_argument' },
  too_many_pages: { httpStatus: 400, wireCode: 'out_of_range' },
  // Page fusion: KSM cannot be driven here, or its files failed.
  ksm_unavailable: { httpStatus: 503, wireCode: 'internal' },
  ksm_io: { httpStatus: 503, wireCode: 'internal' },
  // balloonctl: a command line it cannot parse (exit 2), a host it cannot reach.
  usage: { httpStatus: 400, wireCode: 'invalid_argument' },
  unreachable: { httpStatus: 503, wireCode: 'internal' },
  // balloonctl --wait: the balloon stopped short, or a newer target replaced the one waited for.
  short: { httpStatus: 409, wireCode: 'internal' },
  cancelled: { httpStatus: 409, wireCode: 'internal' },
} as const satisfies Record<string, { httpStatus: number; wireCode: ErrorCode }>;

/** One of the host's error codes. */
export type HostErrorCode = keyof typeof CODES;

/** Closed set of host error codes; the admin API sends them as `error.code`. */
export const HOST_ERROR_CODES = Object.freeze(Object.keys(CODES) as HostErrorCode[]);

/** HTTP status of each code: the admin API's only mapping from errors to statuses. */
export const HTTP_STATUS_OF: Readonly<Record<HostErrorCode, number>> = Object.freeze(
  Object.fromEntries(HOST_ERROR_CODES.map((c) => [c, CODES[c].httpStatus])) as Record<HostErrorCode, number>,
);

/** Protocol code of each host code, for a guest told about an error it caused: the only host-to-wire mapping. */
export const WIRE_CODE_OF: Readonly<Record<HostErrorCode, ErrorCode>> = Object.freeze(
  Object.fromEntries(HOST_ERROR_CODES.map((c) => [c, CODES[c].wireCode])) as Record<HostErrorCode, ErrorCode>,
);

/** Tells whether a value is one of the host's error codes. */
export function isHostErrorCode(value: unknown): value is HostErrorCode {
  return typeof value === 'string' && Object.hasOwn(CODES, value);
}

/**
 * The host code of each cgroup code (the cgroup layer keeps its own names for
 * the kernel's answers): the one mapping, used by HostError.from.
 */
const FROM_CGROUP: Readonly<Record<CgroupErrorCode, HostErrorCode>> = {
  // No memory controller here, or no permission to write it.
  unavailable: 'unavailable',
  invalid_path: 'invalid_argument',
  invalid_value: 'invalid_argument',
  not_found: 'not_found',
  already_exists: 'already_exists',
  // A limit below what the guest uses now (the kernel would have to reclaim).
  limit_below_usage: 'out_of_range',
  over_parent: 'pool_exhausted',
  // The cgroup still has processes: the guest still runs.
  busy: 'vm_running',
  io: 'internal',
};

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

  /** The protocol code a guest that caused this error is told. */
  get wireCode(): ErrorCode {
    return WIRE_CODE_OF[this.code];
  }

  /**
   * Normalises anything thrown into a HostError, keeping it as the cause:
   * SQLite errors become `storage`, cgroup errors their host code, anything
   * else `fallback` (default `internal`).
   */
  static from(err: unknown, fallback: HostErrorCode = 'internal'): HostError {
    if (err instanceof HostError) return err;
    if (err instanceof CgroupError) return new HostError(FROM_CGROUP[err.code], err.message, { cause: err });
    const message = err instanceof Error ? err.message : String(err);
    const sqliteCode = (err as { code?: unknown } | null)?.code;
    if (typeof sqliteCode === 'string' && sqliteCode.startsWith('SQLITE_')) {
      return new HostError('storage', `the VM registry could not be written (${sqliteCode}): ${message}`, { cause: err });
    }
    return new HostError(fallback, message, { cause: err });
  }
}
