// What the launcher reads of processes: whether a pid is still the process it
// started (start time from /proc/PID/stat guards against pid reuse), and
// signals to a process group.
import { readFileSync } from 'node:fs';

/** The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or undefined if it is gone. */
export function procStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and ')': fields start after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z') return undefined; // a zombie has exited
    const ticks = Number(rest[19]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` is still the process that started at `startTicks`. */
export function isSameProcess(pid: number, startTicks: number): boolean {
  return procStartTicks(pid) === startTicks;
}

/** Sends a signal; false if the process (or group, for a negative pid) is gone. */
export function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** The memory cgroup line of /proc/PID/cgroup, or '' if the process is gone. */
export function procCgroupText(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return '';
  }
}
