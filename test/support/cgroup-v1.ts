// The v1 memory cgroups the hand-off tests make and read: one place for the
// skip reason, the kernel's files and the clean-up (each test used to have
// its own copy).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './wait.js';

const MIB = 1024 * 1024;

/** Where cgroup v1's memory controller is mounted. */
export const V1_MEMORY = '/sys/fs/cgroup/memory';

/** Why a test that makes v1 memory cgroups cannot run here ('' when it can). */
export function cgroupV1SkipReason(): string {
  if (process.getuid?.() !== 0) return 'needs root to make memory cgroups';
  if (!existsSync(join(V1_MEMORY, 'memory.usage_in_bytes'))) return `no cgroup v1 memory controller at ${V1_MEMORY}`;
  return '';
}

/** A number file of a cgroup (memory.usage_in_bytes, memory.failcnt, …). */
export function cgroupNumber(dir: string, file: string): number {
  return Number(readFileSync(join(dir, file), 'utf8'));
}

/** A byte file of a cgroup, in MiB. */
export function cgroupMib(dir: string, file: string): number {
  return cgroupNumber(dir, file) / MIB;
}

/** OOM kills the kernel counted in a cgroup (memory.oom_control's oom_kill). */
export function cgroupOomKills(dir: string): number {
  return Number(/^oom_kill (\d+)$/m.exec(readFileSync(join(dir, 'memory.oom_control'), 'utf8'))?.[1] ?? 0);
}

/** A cgroup a test made: its directory, and its removal (once its processes are gone). */
export interface TestCgroup {
  dir: string;
  /** Removes it and the parents made with it, deepest first; waits for the kernel to let go of exited tasks. */
  remove(): Promise<void>;
}

/**
 * Makes `<V1_MEMORY>/<parentName>/<childName>` (the child with limitMib when
 * given): a parent of our own, so nothing is left among the machine's cgroups
 * if the child cannot be removed.
 */
export function makeV1Cgroup(parentName: string, childName: string, limitMib?: number): TestCgroup {
  const parent = join(V1_MEMORY, parentName);
  const dir = join(parent, childName);
  mkdirSync(parent);
  mkdirSync(dir);
  if (limitMib !== undefined) writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitMib * MIB));
  return {
    dir,
    async remove() {
      for (const d of [dir, parent]) {
        if (!existsSync(d)) continue;
        await waitFor(
          () => {
            rmdirSync(d);
            return true;
          },
          { what: `removing ${d}` },
        );
      }
    },
  };
}
