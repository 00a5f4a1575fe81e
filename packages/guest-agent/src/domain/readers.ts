// The three memory domains, read from the kernel's files. Each read catches
// its own failures: a missing file yields zeros, never an exception, because
// a statistics tick or a floor check must not crash the agent.
import { readdirSync, readFileSync } from 'node:fs';
import { AgentError } from '../errors.js';
import { parseCgroupLimit, parseKeyValues, parseMeminfo, parsePressure, parseProcCgroup, parseProcStat, parseProcStatus } from './parsers.js';
import type { DomainAvailability, DomainKind, DomainSource, DomainStats } from './source.js';
import { ksmMergingPages } from '../fusion/ksm-stats.js';
import { BYTES_PER_MIB, MAX_MEMORY_MIB } from '@memballoon/protocol';

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function psi(path: string): { some: number; full: number } {
  const text = readText(path);
  if (!text) return { some: 0, full: 0 };
  const p = parsePressure(text);
  return { some: p.some?.avg10Percent ?? 0, full: p.full?.avg10Percent ?? 0 };
}

/** Machine-wide swap and fault counters from /proc/vmstat. */
function vmstat(pageBytes: number): { swapInBytes: number; swapOutBytes: number; majorFaults: number; minorFaults: number } {
  const v = parseKeyValues(readText('/proc/vmstat') ?? '');
  const major = v.get('pgmajfault') ?? 0;
  return {
    swapInBytes: (v.get('pswpin') ?? 0) * pageBytes,
    swapOutBytes: (v.get('pswpout') ?? 0) * pageBytes,
    majorFaults: major,
    // pgfault counts every fault; the minor ones are the rest.
    minorFaults: Math.max(0, (v.get('pgfault') ?? 0) - major),
  };
}

/** KSM-merged bytes of one process (ksm_merging_pages or ksm_stat; 0 where the kernel lacks both). */
export function ksmMergedBytes(pid: number | 'self', pageBytes: number): number {
  return ksmMergingPages(pid) * pageBytes;
}

interface MachineMemory {
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
  cachedBytes: number;
}

/** /proc/meminfo in the shape the domains need. */
export function readMachineMemory(): MachineMemory {
  const m = parseMeminfo(readText('/proc/meminfo') ?? '');
  const total = m.get('MemTotal') ?? 0;
  const free = m.get('MemFree') ?? 0;
  return {
    totalBytes: total,
    freeBytes: free,
    // Kernels before 3.14 lack MemAvailable; free plus cache is the old estimate.
    availableBytes: m.get('MemAvailable') ?? free + (m.get('Cached') ?? 0),
    cachedBytes: m.get('Cached') ?? 0,
  };
}

/** A whole machine or VM: /proc/meminfo, /proc/vmstat, /proc/pressure/memory. */
export class MachineDomain implements DomainSource {
  readonly kind = 'machine';
  readonly totalMib: number;

  constructor(private readonly pageBytes = 4096) {
    this.totalMib = Math.floor(readMachineMemory().totalBytes / BYTES_PER_MIB);
  }

  /** See DomainSource. */
  availability(): DomainAvailability {
    const m = readMachineMemory();
    return { totalBytes: m.totalBytes, availableBytes: m.availableBytes };
  }

  /** See DomainSource. */
  stats(): DomainStats {
    const m = readMachineMemory();
    const p = psi('/proc/pressure/memory');
    return {
      domain: 'machine',
      totalBytes: m.totalBytes,
      availableBytes: m.availableBytes,
      freeBytes: m.freeBytes,
      diskCachesBytes: m.cachedBytes,
      ...vmstat(this.pageBytes),
      psiSomeAvg10Percent: p.some,
      psiFullAvg10Percent: p.full,
      sharedBytes: ksmMergedBytes('self', this.pageBytes),
    };
  }
}

/** Where a process's memory cgroup lives. */
export interface CgroupLocation {
  version: 1 | 2;
  /** The cgroup's directory holding memory.* files. */
  dir: string;
}

/**
 * Finds the memory cgroup of a process: cgroup v2 (pure or hybrid mount)
 * first, then v1's memory controller. Inside a cgroup namespace the path
 * reads "/" and the files sit at the mount's root, so that is tried too.
 */
export function findMemoryCgroup(pid: number | 'self' = 'self', root = '/sys/fs/cgroup'): CgroupLocation | null {
  const entries = parseProcCgroup(readText(`/proc/${pid}/cgroup`) ?? '');
  const exists = (path: string): boolean => readText(path) !== null;
  const v2 = entries.find((e) => e.hierarchyId === 0);
  if (v2) {
    for (const base of [root, `${root}/unified`]) {
      for (const dir of [`${base}${v2.path === '/' ? '' : v2.path}`, base]) {
        if (exists(`${dir}/memory.current`)) return { version: 2, dir };
      }
    }
  }
  const v1 = entries.find((e) => e.controllers.includes('memory'));
  if (v1) {
    const base = `${root}/memory`;
    for (const dir of [`${base}${v1.path === '/' ? '' : v1.path}`, base]) {
      if (exists(`${dir}/memory.usage_in_bytes`)) return { version: 1, dir };
    }
  }
  return null;
}

/** The memory limit of a cgroup in bytes, or null when it has none. */
export function cgroupLimitBytes(loc: CgroupLocation): number | null {
  return parseCgroupLimit(readText(`${loc.dir}/${loc.version === 2 ? 'memory.max' : 'memory.limit_in_bytes'}`) ?? 'max');
}

/** A container or cgroup: memory.current/max/stat (v2) or usage_in_bytes/limit_in_bytes/stat (v1). */
export class CgroupDomain implements DomainSource {
  readonly kind = 'cgroup';
  readonly totalMib: number;

  constructor(
    private readonly loc: CgroupLocation,
    private readonly pageBytes = 4096,
  ) {
    this.totalMib = Math.floor(this.totalBytes() / BYTES_PER_MIB);
  }

  private totalBytes(): number {
    // An unlimited cgroup can grow to the machine's memory.
    return cgroupLimitBytes(this.loc) ?? readMachineMemory().totalBytes;
  }

  private usage(): { usageBytes: number; inactiveFileBytes: number; fileBytes: number; stat: Map<string, number> } {
    const v2 = this.loc.version === 2;
    const usageBytes = Number((readText(`${this.loc.dir}/${v2 ? 'memory.current' : 'memory.usage_in_bytes'}`) ?? '0').trim()) || 0;
    const stat = parseKeyValues(readText(`${this.loc.dir}/memory.stat`) ?? '');
    return {
      usageBytes,
      inactiveFileBytes: (v2 ? stat.get('inactive_file') : stat.get('total_inactive_file')) ?? 0,
      fileBytes: (v2 ? stat.get('file') : stat.get('total_cache')) ?? 0,
      stat,
    };
  }

  /** See DomainSource. */
  availability(): DomainAvailability {
    const total = this.totalBytes();
    const u = this.usage();
    // Inactive page cache is reclaimable, as `docker stats` counts it; and an
    // unlimited (or generous) cgroup is still bounded by the machine.
    const inCgroup = Math.max(0, total - u.usageBytes + u.inactiveFileBytes);
    return { totalBytes: total, availableBytes: Math.min(inCgroup, readMachineMemory().availableBytes) };
  }

  /** See DomainSource. */
  stats(): DomainStats {
    const total = this.totalBytes();
    const u = this.usage();
    const v2 = this.loc.version === 2;
    const machine = vmstat(this.pageBytes);
    const p = v2 ? psi(`${this.loc.dir}/memory.pressure`) : psi('/proc/pressure/memory');
    const major = (v2 ? u.stat.get('pgmajfault') : u.stat.get('total_pgmajfault')) ?? machine.majorFaults;
    const all = (v2 ? u.stat.get('pgfault') : u.stat.get('total_pgfault')) ?? machine.minorFaults + machine.majorFaults;
    return {
      domain: 'cgroup',
      totalBytes: total,
      availableBytes: Math.min(Math.max(0, total - u.usageBytes + u.inactiveFileBytes), readMachineMemory().availableBytes),
      freeBytes: Math.max(0, total - u.usageBytes),
      diskCachesBytes: u.fileBytes,
      swapInBytes: machine.swapInBytes,
      swapOutBytes: machine.swapOutBytes,
      majorFaults: major,
      minorFaults: Math.max(0, all - major),
      psiSomeAvg10Percent: p.some,
      psiFullAvg10Percent: p.full,
      sharedBytes: ksmMergedBytes('self', this.pageBytes),
    };
  }
}

/** One process of a tree, as the process domain sums it. */
export interface TreeProcess {
  pid: number;
  rssBytes: number;
  minorFaults: number;
  majorFaults: number;
}

/**
 * The children of a process from /proc/PID/task/TID/children (Linux 3.5+,
 * CONFIG_PROC_CHILDREN), one file per thread since a child belongs to the
 * thread that forked it; null where the kernel lacks the files.
 */
function childrenOf(pid: number): number[] | null {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const kids: number[] = [];
  for (const tid of tids) {
    const text = readText(`/proc/${pid}/task/${tid}/children`);
    if (text === null) {
      // The thread may just have exited; the files missing for the main thread means no support.
      if (tid === String(pid)) return null;
      continue;
    }
    for (const word of text.split(' ')) if (word.trim()) kids.push(Number(word));
  }
  return kids;
}

/**
 * The processes descending from (and including) the roots, read from /proc.
 * It follows the tree through the kernel's children files, so its cost is
 * the tree's size, not the machine's: the pressure check and every inflate
 * near the floor read it, and a scan of all of /proc took 44 ms (p50) with
 * 146 processes on a busy machine. Without those files it scans /proc.
 */
export function readProcessTree(roots: readonly number[], pageBytes = 4096): TreeProcess[] {
  const out: TreeProcess[] = [];
  const seen = new Set<number>();
  const queue = [...roots];
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const st = parseProcStat(readText(`/proc/${pid}/stat`) ?? '');
    if (!st || st.state === 'Z') continue;
    const kids = childrenOf(pid);
    if (kids === null) return scanProcessTree(roots, pageBytes);
    out.push({ pid, rssBytes: st.rssPages * pageBytes, minorFaults: st.minorFaults, majorFaults: st.majorFaults });
    queue.push(...kids);
  }
  return out;
}

/** readProcessTree by a scan of every process in /proc (kernels without children files). */
function scanProcessTree(roots: readonly number[], pageBytes: number): TreeProcess[] {
  const byParent = new Map<number, number[]>();
  const stats = new Map<number, ReturnType<typeof parseProcStat>>();
  let names: string[] = [];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const st = parseProcStat(readText(`/proc/${name}/stat`) ?? '');
    if (!st || st.state === 'Z') continue;
    stats.set(st.pid, st);
    const kids = byParent.get(st.ppid);
    if (kids) kids.push(st.pid);
    else byParent.set(st.ppid, [st.pid]);
  }
  const out: TreeProcess[] = [];
  const seen = new Set<number>();
  const queue = roots.filter((p) => stats.has(p));
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const st = stats.get(pid)!;
    out.push({ pid, rssBytes: st.rssPages * pageBytes, minorFaults: st.minorFaults, majorFaults: st.majorFaults });
    for (const kid of byParent.get(pid) ?? []) queue.push(kid);
  }
  return out;
}

/**
 * A process tree (the agent, and a workload it wraps, with their children)
 * against the VM's memory size. The roots may be other processes than the
 * agent (an agent embedded in a test squeezing a child): the balloon is then
 * outside the tree, and is counted as used all the same (countBalloon), so
 * that the tree sees its memory shrink by the balloon.
 */
export class ProcessDomain implements DomainSource {
  readonly kind = 'process';
  private balloonBytes: () => number = () => 0;

  constructor(
    /** The VM's memory size, in MiB. */
    readonly totalMib: number,
    private readonly roots: readonly number[] = [process.pid],
    private readonly pageBytes = 4096,
    /**
     * The memory cgroup with a limit that charges the tree (a guest the host
     * started), if any: the reported total, available, free memory and disk
     * caches are then the kernel's (limit, limit − usage, its page cache),
     * which the tree's RSS gets wrong (it misses the workload's file cache
     * and counts shared pages once per process). The agent's own decisions
     * (availability) stay on the tree.
     */
    private readonly cgroup: CgroupLocation | null = null,
  ) {
    if (!Number.isSafeInteger(totalMib) || totalMib <= 0) {
      throw new AgentError('invalid_config', "the process domain needs the VM's memory size (--memory-mib)");
    }
    if (roots.length === 0 || !roots.every((pid) => Number.isSafeInteger(pid) && pid > 0)) {
      throw new AgentError('invalid_config', `the process domain needs the process ids it measures, not [${roots.join(', ')}]`);
    }
  }

  /** See DomainSource. */
  countBalloon(residentBytes: () => number): void {
    this.balloonBytes = residentBytes;
  }

  /** The tree's RSS, plus the balloon where it lives outside the tree (inside, it is in the RSS already). */
  private usedBytes(tree: TreeProcess[]): number {
    const rss = tree.reduce((sum, p) => sum + p.rssBytes, 0);
    return tree.some((p) => p.pid === process.pid) ? rss : rss + this.balloonBytes();
  }

  private available(totalBytes: number, usedBytes: number): number {
    // The tree cannot use more than the machine has left, whatever its size.
    return Math.min(Math.max(0, totalBytes - usedBytes), usedBytes + readMachineMemory().availableBytes);
  }

  /** See DomainSource. */
  availability(): DomainAvailability {
    const total = this.totalMib * BYTES_PER_MIB;
    const used = this.usedBytes(readProcessTree(this.roots, this.pageBytes));
    return { totalBytes: total, availableBytes: this.available(total, used) };
  }

  /** See DomainSource. */
  stats(): DomainStats {
    const total = this.totalMib * BYTES_PER_MIB;
    const tree = readProcessTree(this.roots, this.pageBytes);
    const used = this.usedBytes(tree);
    const machine = vmstat(this.pageBytes);
    const p = psi('/proc/pressure/memory');
    // Charged to a limited cgroup: the figures a user reads are the kernel's (as the cgroup domain reports them).
    const charged = this.cgroup ? new CgroupDomain(this.cgroup, this.pageBytes).stats() : null;
    return {
      domain: 'process',
      totalBytes: charged?.totalBytes ?? total,
      availableBytes: charged?.availableBytes ?? this.available(total, used),
      freeBytes: charged?.freeBytes ?? Math.max(0, total - used),
      diskCachesBytes: charged?.diskCachesBytes ?? 0,
      swapInBytes: machine.swapInBytes,
      swapOutBytes: machine.swapOutBytes,
      majorFaults: tree.reduce((s, t) => s + t.majorFaults, 0),
      minorFaults: tree.reduce((s, t) => s + t.minorFaults, 0),
      psiSomeAvg10Percent: p.some,
      psiFullAvg10Percent: p.full,
      sharedBytes: tree.reduce((s, t) => s + ksmMergedBytes(t.pid, this.pageBytes), 0),
    };
  }
}

/** What the agent knows when it picks a domain. */
export interface DomainChoiceInput {
  requested: DomainKind | 'auto';
  /** The VM's memory size (--memory-mib), if given. */
  memoryMib?: number | undefined;
  /** A workload is wrapped (`-- COMMAND ARGS`), or the processes to measure are named. */
  wrapped: boolean;
  /** The agent's memory cgroup has a limit. */
  cgroupLimited: boolean;
  /** A memory cgroup was found at all. */
  cgroupFound: boolean;
}

/**
 * Picks the domain: the one requested; else a process tree when the VM's
 * size is given (or a workload wrapped), a limited cgroup when there is one.
 * With neither, nothing says how large the VM is: the whole machine would be
 * a guess that a host's pool refuses again and again, so it is an error
 * (`--domain machine` says so on purpose, for an agent inside a real VM).
 * Throws AgentError('domain_unavailable' | 'invalid_config').
 */
export function chooseDomain(input: DomainChoiceInput): DomainKind {
  // Above the protocol's limit, Hello's uint32 wrapped (99999999999 went out
  // as 1215752191) and the host refused it again and again: refuse it here.
  const m = input.memoryMib;
  if (m !== undefined && (!Number.isSafeInteger(m) || m < 1 || m > MAX_MEMORY_MIB)) {
    throw new AgentError('invalid_config', `the VM's memory size must be a whole number of MiB from 1 to ${MAX_MEMORY_MIB} (got ${m})`);
  }
  if (input.requested === 'auto' && input.memoryMib === undefined && !input.wrapped && !input.cgroupLimited) {
    throw new AgentError(
      'invalid_config',
      "the VM's memory size is unknown: this process is in no memory cgroup with a limit. Pass --memory-mib N (memoryMib in the library), " +
        'or --domain machine when this whole machine is the VM',
    );
  }
  const kind: DomainKind = input.requested !== 'auto' ? input.requested : input.memoryMib !== undefined || input.wrapped ? 'process' : 'cgroup';
  if (kind === 'process' && input.memoryMib === undefined) {
    throw new AgentError('invalid_config', "the process domain needs the VM's memory size: pass --memory-mib N");
  }
  if (kind === 'cgroup' && !input.cgroupFound) {
    throw new AgentError('domain_unavailable', 'no memory cgroup found for this process (/proc/self/cgroup)');
  }
  return kind;
}

/** Options of openDomain. */
export interface OpenDomainOptions {
  domain?: DomainKind | 'auto';
  memoryMib?: number | undefined;
  /** Root processes of the process domain (default: this process; a wrapped workload is its child); naming them picks the process domain. */
  roots?: readonly number[];
  wrapped?: boolean;
  pageBytes?: number;
}

/** Opens the guest's memory domain, chosen automatically unless one is requested. */
export function openDomain(options: OpenDomainOptions = {}): DomainSource {
  const loc = findMemoryCgroup();
  const kind = chooseDomain({
    requested: options.domain ?? 'auto',
    memoryMib: options.memoryMib,
    wrapped: (options.wrapped ?? false) || options.roots !== undefined,
    cgroupFound: loc !== null,
    cgroupLimited: loc !== null && cgroupLimitBytes(loc) !== null,
  });
  const pageBytes = options.pageBytes ?? 4096;
  switch (kind) {
    case 'process':
      // The agent's own cgroup charges the tree only when the tree is the agent's (no roots named).
      return new ProcessDomain(
        options.memoryMib!,
        options.roots ?? [process.pid],
        pageBytes,
        options.roots === undefined && loc !== null && cgroupLimitBytes(loc) !== null ? loc : null,
      );
    case 'cgroup':
      return new CgroupDomain(loc!, pageBytes);
    case 'machine':
      return new MachineDomain(pageBytes);
  }
}

/** VmRSS of a process in bytes (0 when it cannot be read). */
export function processRssBytes(pid: number | 'self' = 'self'): number {
  return parseProcStatus(readText(`/proc/${pid}/status`) ?? '').rssBytes;
}

/** VmLck of a process in bytes (0 when unreadable): what the kernel holds pinned for it. */
export function processLockedBytes(pid: number | 'self' = 'self'): number {
  return parseProcStatus(readText(`/proc/${pid}/status`) ?? '').lockedBytes;
}
