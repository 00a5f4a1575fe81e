// The one error type of the host's cgroup boundary (the kernel's cgroup file
// system), with a closed code; errno codes map onto it in one place.

/** Every reason a cgroup call of the host can fail. */
export const CGROUP_ERROR_CODES = [
  // No memory controller here, or not allowed to write it (not root).
  'unavailable',
  // A path or name that is not a cgroup we may use (outside the hierarchy, `..`, bad characters).
  'invalid_path',
  // A limit or pid that is not a positive whole number.
  'invalid_value',
  // The cgroup does not exist (any more).
  'not_found',
  // The cgroup already exists where a new one was asked for.
  'already_exists',
  // A limit below what the cgroup uses now: the kernel would have to reclaim (v1 EBUSY).
  'limit_below_usage',
  // The children's limits would exceed the parent's (the pool cgroup).
  'over_parent',
  // The cgroup still has processes or children and cannot be removed.
  'busy',
  // Reading or writing a cgroup file failed otherwise.
  'io',
] as const;

/** A closed code of CgroupError. */
export type CgroupErrorCode = (typeof CGROUP_ERROR_CODES)[number];

/** The error of the host's cgroup layer. */
export class CgroupError extends Error {
  /** Why it failed; one of CGROUP_ERROR_CODES. */
  readonly code: CgroupErrorCode;

  constructor(code: CgroupErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CgroupError';
    this.code = code;
  }

  /** Normalises anything thrown into a CgroupError; errno codes pick the code, `fallback` otherwise. */
  static from(err: unknown, fallback: CgroupErrorCode = 'io'): CgroupError {
    if (err instanceof CgroupError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new CgroupError(codeOfErrno(errnoOf(err)) ?? fallback, message, { cause: err });
  }
}

/** The Node errno code (`ENOENT`, …) of a thrown value, if it has one. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The one mapping from errno codes of cgroup file operations to CgroupError codes. */
export function codeOfErrno(errno: string | undefined): CgroupErrorCode | undefined {
  switch (errno) {
    case 'ENOENT':
    // A path through a file (modifyvm --cgroup …/memory.limit_in_bytes): no such cgroup either.
    case 'ENOTDIR':
      return 'not_found';
    case 'EEXIST':
      return 'already_exists';
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return 'unavailable';
    case 'ENOTEMPTY':
      return 'busy';
    default:
      return undefined;
  }
}
