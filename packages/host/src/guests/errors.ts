// The launcher's errors at the admin boundary: HostError.from maps the cgroup
// layer's codes (../errors.ts, the one mapping).
import { HostError } from '../errors.js';

/** Anything thrown by the cgroup layer or the launcher, as a HostError. */
export function toHostError(err: unknown): HostError {
  return HostError.from(err);
}
