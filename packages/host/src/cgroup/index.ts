// The host's cgroup layer: detection of the memory hierarchy (v1 or v2), the
// host's subtree of it, one MemoryCgroup per guest, and the limit planner.
import { readFile } from 'node:fs/promises';
import { detectMemoryCgroups, type MemoryCgroupSupport } from './detect.js';
import { kernelCgroupFs, type CgroupFs } from './fs-port.js';
import { CgroupTree } from './tree.js';

export { CgroupError, CGROUP_ERROR_CODES, type CgroupErrorCode } from './errors.js';
export type { CgroupVersion, MemoryCgroup } from './memory-cgroup.js';
export { KernelMemoryCgroup } from './kernel-cgroup.js';
export { CgroupTree, DEFAULT_CGROUP_PARENT, cgroupNameProblem } from './tree.js';
export { planLimits, sumOfLimits, type LimitStep, type LimitState } from './limit-plan.js';
export { detectMemoryCgroups, type MemoryCgroupSupport } from './detect.js';
export { memoryCgroupOfProc } from './parse.js';
export { kernelCgroupFs, type CgroupFs } from './fs-port.js';

/** The memory hierarchy of this machine with the host's parent in it, or why there is none. */
export async function openMemoryHierarchy(
  parentName: string,
  fs: CgroupFs = kernelCgroupFs,
): Promise<{ tree: CgroupTree; support: MemoryCgroupSupport } | { tree: undefined; support: MemoryCgroupSupport }> {
  let mountinfo = '';
  try {
    mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return { tree: undefined, support: { available: false, reason: 'no /proc/self/mountinfo (not Linux?)' } };
  }
  const support = await detectMemoryCgroups(fs, mountinfo);
  if (!support.available) return { tree: undefined, support };
  return { tree: new CgroupTree(fs, support.root, support.version, parentName), support };
}
