// MemoryCgroup over the kernel's control files, v1 or v2: the one place that
// knows which file holds what in each version.
import { CgroupError, errnoOf } from './errors.js';
import type { CgroupFs } from './fs-port.js';
import type { CgroupVersion, MemoryCgroup } from './memory-cgroup.js';
import { parseCount, parseKeyed, parseLimit, parsePids } from './parse.js';

/** The control files of each version. */
const FILES = {
  1: { usage: 'memory.usage_in_bytes', limit: 'memory.limit_in_bytes', unlimited: '-1' },
  2: { usage: 'memory.current', limit: 'memory.max', unlimited: 'max' },
} as const;

/** One memory cgroup read and written through its control files. */
export class KernelMemoryCgroup implements MemoryCgroup {
  constructor(
    readonly dir: string,
    readonly version: CgroupVersion,
    private readonly fs: CgroupFs,
  ) {}

  private file(name: string): string {
    return `${this.dir}/${name}`;
  }

  private async read(name: string): Promise<string> {
    try {
      return await this.fs.readText(this.file(name));
    } catch (err) {
      throw CgroupError.from(err);
    }
  }

  /** memory.usage_in_bytes (v1) | memory.current (v2). */
  async usageBytes(): Promise<number> {
    const name = FILES[this.version].usage;
    return parseCount(await this.read(name), this.file(name));
  }

  /** memory.limit_in_bytes | memory.max; null when unlimited. */
  async limitBytes(): Promise<number | null> {
    const name = FILES[this.version].limit;
    return parseLimit(await this.read(name), this.file(name));
  }

  /** Writes the hard limit; below usage the kernel reclaims first, and where it cannot the limit stays (limit_below_usage), never an OOM kill. */
  async setLimitBytes(bytes: number | null): Promise<void> {
    if (bytes !== null && (!Number.isSafeInteger(bytes) || bytes <= 0)) {
      throw new CgroupError('invalid_value', `a memory limit must be a positive whole number of bytes (got ${bytes})`);
    }
    const name = FILES[this.version].limit;
    // v2 would reclaim and then OOM-kill to meet a lower memory.max; v1
    // reclaims in the write and answers EBUSY. So v2 reclaims first through
    // memory.reclaim (what v1's write does), and writes the limit only once
    // usage is below it (a race with a growing guest remains on v2: the
    // kernel then reclaims, which is its job).
    if (bytes !== null && this.version === 2) {
      let usage = await this.usageBytes();
      if (bytes < usage) {
        await this.fs.writeText(this.file('memory.reclaim'), String(usage - bytes)).catch(() => undefined);
        usage = await this.usageBytes();
        if (bytes < usage) throw belowUsage(this.dir, bytes, usage);
      }
    }
    try {
      await this.fs.writeText(this.file(name), bytes === null ? FILES[this.version].unlimited : String(bytes));
    } catch (err) {
      if (errnoOf(err) === 'EBUSY') throw belowUsage(this.dir, bytes ?? 0, await this.usageBytes().catch(() => NaN), err);
      throw CgroupError.from(err);
    }
  }

  /** Inactive file cache (v1 memory.stat total_inactive_file, v2 inactive_file). */
  async reclaimableBytes(): Promise<number> {
    const stat = parseKeyed(await this.read('memory.stat'));
    return (this.version === 1 ? stat.get('total_inactive_file') : stat.get('inactive_file')) ?? 0;
  }

  /** OOM kills so far (v1 memory.oom_control oom_kill, v2 memory.events oom_kill). */
  async oomKills(): Promise<number> {
    const text = await this.read(this.version === 1 ? 'memory.oom_control' : 'memory.events');
    return parseKeyed(text).get('oom_kill') ?? 0;
  }

  /** Times the limit was hit (v1 memory.failcnt, v2 memory.events max). */
  async limitHits(): Promise<number> {
    if (this.version === 1) return parseCount(await this.read('memory.failcnt'), this.file('memory.failcnt'));
    return parseKeyed(await this.read('memory.events')).get('max') ?? 0;
  }

  /** Process ids in the cgroup (cgroup.procs). */
  async pids(): Promise<number[]> {
    return parsePids(await this.read('cgroup.procs'));
  }

  /** Moves a process (all its threads) into this cgroup. */
  async addPid(pid: number): Promise<void> {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new CgroupError('invalid_value', `not a process id: ${pid}`);
    try {
      await this.fs.writeText(this.file('cgroup.procs'), String(pid));
    } catch (err) {
      // ESRCH: the process is gone; say so rather than "io".
      if (errnoOf(err) === 'ESRCH') throw new CgroupError('not_found', `process ${pid} does not exist`, { cause: err });
      throw CgroupError.from(err);
    }
  }
}

function belowUsage(dir: string, bytes: number, usage: number, cause?: unknown): CgroupError {
  const mib = (b: number) => (Number.isFinite(b) ? `${Math.ceil(b / 1048576)} MiB` : 'more');
  return new CgroupError(
    'limit_below_usage',
    `cannot set the limit of ${dir} to ${mib(bytes)}: the cgroup uses ${mib(usage)} (the kernel would have to reclaim)`,
    cause === undefined ? undefined : { cause },
  );
}
