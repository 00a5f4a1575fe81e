// Which memory cgroup interface this machine offers, and why: v2 only when its
// hierarchy really has the memory controller (a cgroup2 mount may exist with
// other controllers only, while memory stays bound to a v1 hierarchy).
import type { CgroupFs } from './fs-port.js';
import type { CgroupVersion } from './memory-cgroup.js';
import { parseCgroupMounts } from './parse.js';

/** Where memory cgroups live here, or why there are none. */
export type MemoryCgroupSupport =
  | { available: true; version: CgroupVersion /** Mount point of the memory hierarchy. */; root: string /** One line: what was found. */; reason: string }
  | { available: false; reason: string };

/** Picks the memory hierarchy from mountinfo: v2 if its controllers include memory, else a v1 `memory` mount. */
export async function detectMemoryCgroups(fs: CgroupFs, mountinfo: string): Promise<MemoryCgroupSupport> {
  const mounts = parseCgroupMounts(mountinfo);
  const v2 = mounts.find((m) => m.version === 2);
  const v1 = mounts.find((m) => m.version === 1 && m.controllers.includes('memory'));
  let v2Note = '';
  if (v2) {
    let controllers: string[] = [];
    try {
      controllers = (await fs.readText(`${v2.mountPoint}/cgroup.controllers`)).trim().split(/\s+/).filter(Boolean);
    } catch {
      // An unreadable cgroup.controllers is a v2 without controllers for us.
    }
    if (controllers.includes('memory')) return { available: true, version: 2, root: v2.mountPoint, reason: `cgroup v2 memory controller at ${v2.mountPoint}` };
    v2Note = ` (the cgroup2 hierarchy at ${v2.mountPoint} offers ${controllers.length > 0 ? `only ${controllers.join(', ')}` : 'no controllers'}: memory is bound to v1)`;
  }
  if (v1) return { available: true, version: 1, root: v1.mountPoint, reason: `cgroup v1 memory controller at ${v1.mountPoint}${v2Note}` };
  return {
    available: false,
    reason: v2
      ? `no memory controller: the cgroup2 hierarchy at ${v2.mountPoint} does not offer it and no v1 memory hierarchy is mounted`
      : 'no memory controller: no cgroup file system is mounted',
  };
}
