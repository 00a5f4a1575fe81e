// The hand-off's pure core: given what the kernel says of a guest's cgroup
// (limit, usage) and what its agent says of its balloon (pinned, handed off),
// the next step that moves pinned balloon memory under the host's limit, or
// gives handed-off memory back. No I/O: the driver reads, asks, and does.
//
// The order preserves the workload's headroom (slack = limit − usage): with
// slack for a batch, the limit comes down first (no reclaim: usage stays at
// or below it) and the agent releases after, which leaves the slack exactly
// as it was, so the workload never sees the released pages. Without slack for
// one chunk, the agent releases one chunk first and the limit follows at
// once: the exposure is one chunk.
//
// No step ever leaves the guest less than a reserve of headroom (limit ≥
// usage + reserve), not even for the moment between lowering the limit and
// the agent's release: the agent needs memory to read the very frame that
// asks it to release, and a workload allocating in that moment would meet a
// full cgroup, reclaim nothing, and be OOM-killed by the hand-off itself.
//
// While the balloon still inflates toward its target, what it has pinned so
// far is handed off already (so that little is left when it settles), but
// only with lower-first steps that also leave it the MiB it has yet to pin:
// limit ≥ usage + reserve + inflating at every moment, so the balloon's own
// growth never meets the lowered limit. Release-first waits for the settle.

import { BYTES_PER_MIB } from '@memballoon/protocol';

/** What the planner needs to know of one guest, in MiB. */
export interface HandOffState {
  /** The VM's memory: its limit with nothing handed off. */
  memoryMib: number;
  /** The balloon's chunk: the agent releases whole chunks only. */
  chunkMib: number;
  /** The cgroup's hard limit now (the kernel's word; unlimited counts as memoryMib). */
  limitMib: number;
  /** The cgroup's usage now (the kernel's word, rounded up). */
  usageMib: number;
  /**
   * Of that usage, inactive file cache (rounded down): what the kernel drops
   * first when the limit comes down on it (v1 in the limit's write, v2
   * through memory.reclaim; never an OOM kill: where it cannot, the write
   * fails and the limit stays). Headroom for the plan like free memory: a
   * guest whose cache fills its cgroup has no free slack, and without it the
   * hand-off stalled after one chunk (test/handoff-cache.test.ts).
   */
  reclaimableMib?: number;
  /** MiB of the balloon the agent has handed off (its last status). */
  handedOffMib: number;
  /** MiB of the balloon the agent still holds pinned (actual − handed off). */
  pinnedMib: number;
  /** How many MiB should be handed off in the end (the settled balloon, at most its target). */
  wantHandedOffMib: number;
  /** Largest batch per round trip. */
  maxBatchMib: number;
  /** Headroom (limit − usage) no step takes from the guest (handOffReserveMib). */
  reserveMib: number;
  /** MiB the balloon may still pin before it settles (target − actual while inflating; 0 once settled). */
  inflatingMib?: number;
}

/** One step of the hand-off. */
export type HandOffStep =
  /** Nothing to do: the limit is where the balloon says it should be. */
  | { kind: 'done' }
  /** The limit is lower than memory − handed off (a deflate, a pressure deflate, a batch the agent fell short of): raise it. */
  | { kind: 'raise'; limitMib: number }
  /** Lower the limit by batchMib first, then ask the agent for handedOffMib. */
  | { kind: 'lower-then-release'; limitMib: number; handedOffMib: number; batchMib: number }
  /** No slack for a chunk: ask the agent for handedOffMib first, then lower the limit to max(usage then + reserve, limitMib). */
  | { kind: 'release-then-lower'; limitMib: number; handedOffMib: number; batchMib: number }
  /** The limit is above memory − handed off (a release-first step could not lower it all the way): lower it to max(usage, limitMib). */
  | { kind: 'catch-up'; limitMib: number };

/**
 * Smallest batch handed off while the balloon still inflates (a round trip
 * per batch). A balloon that will end at the agent's floor (5 % of memory,
 * at least 64 MiB) leaves floor − reserve (4 %, at least 16 MiB) of slack:
 * 12–16 MiB for guests of 1.2–1.6 GiB, which 8 still hands off early.
 */
export const INFLATING_MIN_BATCH_MIB = 8;

/**
 * Largest batch while the balloon still inflates: the agent releases on the
 * thread that feeds its inflating workers, and a long release starves them.
 */
export const INFLATING_MAX_BATCH_MIB = 32;

/**
 * Whether to hand off while balloons inflate, by default, on a machine with
 * `cores` CPUs: as VirtualBox's hypervisor takes each chunk the guest's
 * driver locks, the memory comes back as the balloon grows, not after it.
 * Since the agent faults its chunks in on libuv's pool (no worker isolates),
 * two cores are enough: 1 GiB was free 21 ms after the settle (928 MiB
 * handed off by then) against 169 ms after it, and the last MiB 1.15× later
 * from the target (quiet machine, 2026-11-30 22:20 UTC, `npm run bench --
 * handoff`); with the worker threads it had been 1.32×. One core: the
 * release would take the inflate's only CPU, so it waits for the settle.
 */
export function handOffWhileInflatingByDefault(cores: number): boolean {
  return cores >= 2;
}

/** The headroom a hand-off never takes from a guest of memoryMib: 4 % of it, at least 16 MiB. */
export function handOffReserveMib(memoryMib: number): number {
  return Math.max(16, Math.ceil(memoryMib / 25));
}

/** The limit a balloon implies: memory minus what its agent has handed off. */
export function impliedLimitMib(memoryMib: number, handedOffMib: number): number {
  return Math.max(0, memoryMib - handedOffMib);
}

/** MiB a managed guest has really given up: handed off by its agent and held by its limit. */
export function reclaimedMib(memoryMib: number, handedOffMib: number, limitMib: number): number {
  return Math.max(0, Math.min(handedOffMib, memoryMib - limitMib));
}

/** A kernel byte count as whole MiB: limits round down (never claim more room), usage up (never claim less use). */
export function limitMibOf(bytes: number | null, memoryMib: number): number {
  return bytes === null ? memoryMib : Math.min(memoryMib, Math.floor(bytes / BYTES_PER_MIB));
}

/**
 * A kernel limit as the pool's sum of limits counts it: whole MiB rounded up
 * (a limit not in whole MiB never claims less of the pool than it holds);
 * no limit counts as the VM's memory.
 */
export function limitShareMibOf(bytes: number | null, memoryMib: number): number {
  return bytes === null ? memoryMib : Math.ceil(bytes / BYTES_PER_MIB);
}

/** Usage in whole MiB, rounded up. */
export function usageMibOf(bytes: number): number {
  return Math.ceil(bytes / BYTES_PER_MIB);
}

/** The next step for one guest. Pure; the driver re-reads the kernel before every call. */
export function planHandOff(s: HandOffState): HandOffStep {
  const implied = impliedLimitMib(s.memoryMib, s.handedOffMib);
  // What the guest really needs of its limit: usage less the cache the kernel drops on the way down.
  const usedMib = Math.max(0, s.usageMib - Math.max(0, s.reclaimableMib ?? 0));
  // Giving back comes first: a workload squeezed below what its balloon
  // implies is the one thing here that can hurt a guest.
  if (s.limitMib < implied) return { kind: 'raise', limitMib: implied };
  const want = Math.min(s.wantHandedOffMib, s.handedOffMib + s.pinnedMib);
  const chunk = Math.max(1, s.chunkMib);
  const remaining = want - s.handedOffMib;
  const batch = Math.floor(Math.min(remaining, Math.max(chunk, s.maxBatchMib)) / chunk) * chunk;
  // The headroom kept: the reserve, plus what an inflating balloon has yet to pin.
  const keepMib = s.reserveMib + Math.max(0, s.inflatingMib ?? 0);
  if (s.limitMib > implied) {
    // Behind from an earlier release-first step (the workload took the chunk
    // before the limit came down): catch up, never below usage, and release
    // nothing more until then, so that the exposure stays one chunk in all.
    const to = Math.max(implied, usedMib + keepMib);
    return to < s.limitMib ? { kind: 'catch-up', limitMib: to } : { kind: 'done' };
  }
  if (batch <= 0) return { kind: 'done' };
  // What can come down before the release without eating what is kept.
  const slack = s.limitMib - usedMib - keepMib;
  const inflating = (s.inflatingMib ?? 0) > 0;
  if (slack >= chunk) {
    const c = Math.min(inflating ? Math.max(chunk, Math.floor(INFLATING_MAX_BATCH_MIB / chunk) * chunk) : batch, batch, Math.floor(slack / chunk) * chunk);
    // While inflating, a small batch is not worth its round trip: the next
    // progress report (or the settle) brings more.
    if (inflating && c < Math.max(chunk, INFLATING_MIN_BATCH_MIB)) return { kind: 'done' };
    return { kind: 'lower-then-release', limitMib: s.limitMib - c, handedOffMib: s.handedOffMib + c, batchMib: c };
  }
  // A balloon still inflating would take the released chunk itself: wait for the settle.
  if (inflating) return { kind: 'done' };
  return releaseFirst(s, chunk);
}

function releaseFirst(s: HandOffState, chunk: number): HandOffStep {
  return { kind: 'release-then-lower', limitMib: impliedLimitMib(s.memoryMib, s.handedOffMib + chunk), handedOffMib: s.handedOffMib + chunk, batchMib: chunk };
}
