// Parsers of the kernel's text files. Pure functions of a string: no file
// access, so they are unit-tested with captured samples.

/** Bytes in one kibibyte, the unit /proc/meminfo and /proc/PID/status use. */
const KIB_BYTES = 1024;

/** Parses /proc/meminfo (or a "Key: N kB" file) into bytes by key. */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([\w()]+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m?.[1] && m[2]) out.set(m[1], Number(m[2]) * (line.trimEnd().endsWith('kB') ? KIB_BYTES : 1));
  }
  return out;
}

/** Parses "key value" lines (/proc/vmstat, cgroup memory.stat) into numbers. */
export function parseKeyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(\d+)\s*$/.exec(line);
    if (m?.[1] && m[2]) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** Pressure stall averages of one line of a PSI file, in percent. */
export interface PsiLine {
  avg10Percent: number;
  avg60Percent: number;
  avg300Percent: number;
}

/** Parses /proc/pressure/memory (or a cgroup's memory.pressure). */
export function parsePressure(text: string): { some: PsiLine | null; full: PsiLine | null } {
  const read = (kind: string): PsiLine | null => {
    const m = new RegExp(`^${kind} avg10=([\\d.]+) avg60=([\\d.]+) avg300=([\\d.]+)`, 'm').exec(text);
    if (!m) return null;
    return { avg10Percent: Number(m[1]), avg60Percent: Number(m[2]), avg300Percent: Number(m[3]) };
  };
  return { some: read('some'), full: read('full') };
}

/** What /proc/PID/status tells about memory, in bytes. */
export interface ProcStatusMemory {
  rssBytes: number;
  lockedBytes: number;
}

/** Parses VmRSS and VmLck of /proc/PID/status (0 for a kernel thread or zombie). */
export function parseProcStatus(text: string): ProcStatusMemory {
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m?.[1] ? Number(m[1]) * KIB_BYTES : 0;
  };
  return { rssBytes: kib('VmRSS'), lockedBytes: kib('VmLck') };
}

/** The fields of /proc/PID/stat the agent uses. */
export interface ProcStat {
  pid: number;
  ppid: number;
  state: string;
  minorFaults: number;
  majorFaults: number;
  rssPages: number;
}

/** Parses /proc/PID/stat; the command name may hold spaces and parentheses. */
export function parseProcStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(')');
  const open = text.indexOf('(');
  if (close < 0 || open < 0) return null;
  const pid = Number(text.slice(0, open).trim());
  // Fields after the name, numbered from 3 (state) as in proc(5).
  const f = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  const field = (n: number): number => Number(f[n - 3] ?? 0);
  if (f.length < 22 || !Number.isSafeInteger(pid)) return null;
  return { pid, ppid: field(4), state: f[0] ?? '?', minorFaults: field(10), majorFaults: field(12), rssPages: field(24) };
}

/** One line of /proc/PID/cgroup. */
export interface CgroupEntry {
  hierarchyId: number;
  controllers: string[];
  path: string;
}

/** Parses /proc/PID/cgroup (v1 lines name controllers; the v2 line has id 0 and none). */
export function parseProcCgroup(text: string): CgroupEntry[] {
  const out: CgroupEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined && m[3] !== undefined) {
      out.push({ hierarchyId: Number(m[1]), controllers: m[2] ? m[2].split(',') : [], path: m[3] });
    }
  }
  return out;
}

/**
 * A cgroup memory limit in bytes, or null when unlimited: v2 writes "max",
 * v1 writes a huge page-rounded number (2^63 - 4096 on x86-64).
 */
export function parseCgroupLimit(text: string): number | null {
  const t = text.trim();
  if (t === 'max' || t === '') return null;
  const n = Number(t);
  if (!Number.isFinite(n) || n >= 2 ** 62) return null;
  return n;
}
