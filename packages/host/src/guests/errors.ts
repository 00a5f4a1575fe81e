// CgroupError → HostError at the admin boundary: the one mapping of codes.
import { CgroupError, type CgroupErrorCode } from '../cgroup/index.js';
import { HostError, type HostErrorCode } from '../errors.js';

const HOST_CODE_OF: Readonly<Record<CgroupErrorCode, HostErrorCode>> = {
  unavailable: 'internal',
  invalid_path: 'invalid_argument',
  invalid_value: 'invalid_argument',
  not_found: 'not_found',
  already_exists: 'already_exists',
  limit_below_usage: 'out_of_range',
  over_parent: 'pool_exhausted',
  busy: 'vm_running',
  io: 'internal',
};

/** Anything thrown by the cgroup layer or the launcher, as a HostError. */
export function toHostError(err: unknown): HostError {
  if (err instanceof CgroupError) return new HostError(HOST_CODE_OF[err.code], err.message, { cause: err });
  return HostError.from(err);
}
