// The thin edge to ksmd, the kernel thread that does KSM's scanning: its
// scheduling priority and its CPU time. The kernel starts ksmd at nice 5, so
// on a busy machine it gets about a third of the CPU a normal process gets;
// while hints say there are unmerged candidates the controller raises it to
// nice 0 for a bounded burst (ksm-policy.ts) and puts the found nice back.
// Its CPU time (utime + stime in /proc/PID/stat) is what a scan really cost.
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** USER_HZ: the unit of utime/stime in /proc/PID/stat on every architecture Node supports. */
const CLOCK_TICKS_PER_SECOND = 100;

/** What the KSM edge needs of ksmd. */
export interface KsmdThread {
  /** Its nice value now. Throws where it cannot be read. */
  nice(): number;
  /** Sets its nice value. Throws where that is not permitted. */
  setNice(nice: number): void;
  /** Its CPU time so far (user + system), in ms. */
  cpuMs(): number;
}

/** The real ksmd, found by name among the kernel threads; null where there is none (no KSM, not Linux). */
export function findKsmd(procDir = '/proc'): KsmdThread | null {
  let pid = -1;
  try {
    for (const entry of readdirSync(procDir)) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`${procDir}/${entry}/comm`, 'utf8') === 'ksmd\n') {
          pid = Number(entry);
          break;
        }
      } catch {
        /* the process went away while we looked */
      }
    }
  } catch {
    return null;
  }
  if (pid < 0) return null;
  return {
    nice: () => getPriority(pid),
    setNice: (nice) => setPriority(pid, nice),
    cpuMs: () => processCpuMs(readFileSync(`${procDir}/${pid}/stat`, 'utf8')),
  };
}

/** utime + stime of a /proc/PID/stat line, in ms. */
export function processCpuMs(statLine: string): number {
  // Fields after the command name, which may itself hold spaces and parentheses.
  const fields = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? (ticks * 1000) / CLOCK_TICKS_PER_SECOND : 0;
}
