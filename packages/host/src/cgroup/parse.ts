// Pure parsers of cgroup control files and /proc/self/mountinfo: no I/O, so
// they are unit-tested on strings.
import { CgroupError } from './errors.js';

/**
 * v1 reports "no limit" as PAGE_COUNTER_MAX in bytes (9223372036854771712 on
 * 4 KiB pages); anything at or above 2^62 is no limit a host would ever set.
 */
const V1_UNLIMITED_FROM = 2n ** 62n;

/** A byte count from a control file: `max` (v2) or a huge v1 value is null (no limit). */
export function parseLimit(text: string, file: string): number | null {
  const t = text.trim();
  if (t === 'max') return null;
  if (!/^\d+$/.test(t)) throw new CgroupError('io', `${file} holds '${t}', not a byte count`);
  const n = BigInt(t);
  if (n >= V1_UNLIMITED_FROM) return null;
  return Number(n);
}

/** A plain non-negative integer (usage, failcnt). */
export function parseCount(text: string, file: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new CgroupError('io', `${file} holds '${t}', not a number`);
  return Number(t);
}

/** `key value` lines (memory.events, memory.oom_control, memory.stat) as a map. */
export function parseKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(\d+)\s*$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** The pids of cgroup.procs (one a line). */
export function parsePids(text: string): number[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^\d+$/.test(l))
    .map(Number);
}

/** One cgroup mount of /proc/self/mountinfo. */
export interface CgroupMount {
  /** Where it is mounted. */
  mountPoint: string;
  /** 1 (`cgroup`) or 2 (`cgroup2`). */
  version: 1 | 2;
  /** v1: the controllers bound to it (its super options); v2: empty (read cgroup.controllers). */
  controllers: string[];
}

/** The cgroup mounts of a mountinfo text (proc(5): fields, ` - `, fstype, source, super options). */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const fsType = right[0];
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    const mountPoint = unescapeMountPath(left[4] ?? '');
    if (!mountPoint) continue;
    const superOptions = (right[2] ?? '').split(',');
    out.push({
      mountPoint,
      version: fsType === 'cgroup2' ? 2 : 1,
      controllers: fsType === 'cgroup2' ? [] : superOptions.filter((o) => !o.includes('=') && o !== 'rw' && o !== 'ro'),
    });
  }
  return out;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The memory cgroup path of a process from /proc/PID/cgroup (v1 `N:memory:/path` or v2 `0::/path`). */
export function memoryCgroupOfProc(text: string, version: 1 | 2): string | undefined {
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (version === 2 && m[1] === '0' && m[2] === '') return m[3];
    if (version === 1 && m[2]!.split(',').includes('memory')) return m[3];
  }
  return undefined;
}
