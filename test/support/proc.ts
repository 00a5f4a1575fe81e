// What the kernel says about a process: the ground truth that tests check
// memory claims against.
import { readFileSync } from 'node:fs';

/** VmRSS of a process in MiB (fractional), read from /proc/PID/status. */
export function vmRssMib(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!m?.[1]) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

/** VmLck (mlocked memory) of a process in MiB, read from /proc/PID/status. */
export function vmLockedMib(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmLck:\s+(\d+) kB$/m.exec(status);
  if (!m?.[1]) throw new Error(`no VmLck in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

/** A process's VmRSS and VmLck at one moment, in MiB. */
export interface ProcMemory {
  rssMib: number;
  lockedMib: number;
}

/** VmRSS and VmLck of a process now (one read of /proc/PID/status). */
export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  const lck = /^VmLck:\s+(\d+) kB$/m.exec(status);
  if (!rss?.[1] || !lck?.[1]) throw new Error(`no VmRSS or VmLck in /proc/${pid}/status`);
  return { rssMib: Number(rss[1]) / 1024, lockedMib: Number(lck[1]) / 1024 };
}

/**
 * How much the kernel's holding for an agent's balloon grew since `before`
 * (negative: it shrank), in MiB: VmLck where the balloon is pinned (its
 * locked chunks and nothing else), else VmRSS. VmRSS moves with the agent's
 * heap too: a fresh agent frees its start-up garbage at some later GC, which
 * hid a quarter of a balloon in a VmRSS delta (the policy test's flake:
 * 66 MiB of growth for an 86 MiB balloon), so callers of the unpinned case
 * allow for it.
 */
export function balloonGrowthMib(pid: number, before: ProcMemory, pinned: boolean): number {
  const now = procMemory(pid);
  return pinned ? now.lockedMib - before.lockedMib : now.rssMib - before.rssMib;
}

/** The share of a balloon's move that balloonGrowthMib must show: VmLck is exact (5 % for rounding), VmRSS is not. */
export function balloonShare(pinned: boolean): number {
  return pinned ? 0.95 : 0.8;
}

/**
 * Whether the kernel still holds an agent's balloon of `actualMib` that it
 * held at `before`: VmLck covers it where pinned; else VmRSS fell by less
 * than 16 MiB (what a GC of the agent's heap can free).
 */
export function balloonKept(pid: number, before: ProcMemory, actualMib: number, pinned: boolean): boolean {
  return pinned ? vmLockedMib(pid) >= actualMib * balloonShare(true) : balloonGrowthMib(pid, before, false) > -16;
}

/** Whether a process exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}
