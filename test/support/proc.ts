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

/** Whether a process exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}
