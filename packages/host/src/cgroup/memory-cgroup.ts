// The interface every part of the host uses to read and steer one memory
// cgroup (v1 or v2); the launcher (guests/) and the hand-off code against it.

/** Which kernel interface a cgroup speaks. */
export type CgroupVersion = 1 | 2;

/** One memory cgroup the host owns or adopted; every method reads/writes the kernel's files, never a cache. */
export interface MemoryCgroup {
  /** Absolute directory in the cgroup file system. */
  readonly dir: string;
  /** Which kernel interface it speaks. */
  readonly version: CgroupVersion;
  /** memory.usage_in_bytes (v1) | memory.current (v2). */
  usageBytes(): Promise<number>;
  /** memory.limit_in_bytes | memory.max; null when unlimited. */
  limitBytes(): Promise<number | null>;
  /**
   * Writes the hard limit. Below usage the kernel must reclaim to meet it:
   * v1 does so in the write and answers EBUSY where it cannot (no OOM kill);
   * v2 is asked to reclaim first (memory.reclaim), and the limit is written
   * only once usage is below it (v2 would OOM-kill to meet memory.max).
   * Rejects with CgroupError code 'limit_below_usage' where the kernel could
   * not reclaim enough.
   */
  setLimitBytes(bytes: number | null): Promise<void>;
  /** The cgroup's inactive file cache (memory.stat): clean or not, what the kernel reclaims first when the limit comes down on it. */
  reclaimableBytes(): Promise<number>;
  /** OOM kills so far (v1 memory.oom_control oom_kill, v2 memory.events oom_kill). */
  oomKills(): Promise<number>;
  /** Times the limit was hit (v1 memory.failcnt, v2 memory.events max). */
  limitHits(): Promise<number>;
  /** Process ids in the cgroup (cgroup.procs). */
  pids(): Promise<number[]>;
}
