// The memory hierarchy (cgroup v1 or v2) a test makes its cgroups in, the
// way the host finds it: one place for the name of a test's parent, the skip
// reason and the limit file of each version.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { openMemoryHierarchy } from '@memballoon/host';
import { waitFor } from './wait.js';

/** A cgroup name of this run's own (memballoon-test-PID-RANDOM), for a parent the test alone uses. */
export function testCgroupName(): string {
  return `memballoon-test-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Where a test's cgroups go, or why it cannot make any (skipReason, '' when it can). */
export interface TestHierarchy {
  skipReason: string;
  /** The hierarchy's mount point ('' when skipped). */
  root: string;
  version: 1 | 2;
}

/** Opens the memory hierarchy for a host whose cgroup parent is `parentName`; needs root. */
export async function openTestHierarchy(parentName: string): Promise<TestHierarchy> {
  const opened = await openMemoryHierarchy(parentName);
  if (!opened.tree) return { skipReason: opened.support.reason, root: '', version: 1 };
  if (process.getuid?.() !== 0) return { skipReason: 'not root: cannot create memory cgroups', root: '', version: 1 };
  return { skipReason: '', root: opened.tree.root, version: opened.tree.version };
}

/** The hard limit file of a memory cgroup of this version. */
export function limitFileOf(dir: string, version: 1 | 2): string {
  return join(dir, version === 1 ? 'memory.limit_in_bytes' : 'memory.max');
}

/** The pids in a memory cgroup (its cgroup.procs). */
export function cgroupProcs(dir: string): number[] {
  return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
}

/** Removes a test's parent cgroup and its children, killing what still runs in them (nothing when it is gone). */
export async function removeCgroupTree(parentDir: string): Promise<void> {
  if (!existsSync(parentDir)) return;
  for (const child of readdirSync(parentDir, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    const dir = join(parentDir, child.name);
    for (const pid of cgroupProcs(dir)) process.kill(pid, 'SIGKILL');
    await waitFor(() => cgroupProcs(dir).length === 0, { what: `${dir} to empty`, timeoutMs: 20_000 });
    rmdirSync(dir);
  }
  rmdirSync(parentDir);
}
