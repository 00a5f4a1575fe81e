// Turns the service's state into the JSON views of ./views.ts (the read model). Pure.
import type { BalloonStatus, MemoryStats } from '@memballoon/protocol';
import type { BalloonView, GuestStatsView, VmView } from './views.js';
import type { PoolVmView } from '../pool/pool.js';
import type { VmRecord } from '../registry/registry.js';
import { BYTES_PER_MIB } from '@memballoon/protocol';

/** What the service knows about a running guest beyond the pool's numbers. */
export interface GuestFactsView {
  generation: number;
  pid: number;
  lockedMib: number;
  /** Managed guests: the balloon the agent reports (pinned + handed off), which the pool does not count until handed off. */
  balloonActualMib?: number;
  /** Managed guests: what the agent has handed off. */
  handedOffMib?: number;
  startedAtMs: number;
  status: BalloonStatus | undefined;
  stats: GuestStatsView | undefined;
}

// Module-level, not closures made per call: statsView runs for every stats
// frame (1,000 a second at 1,000 guests).
const clampedMib = (bytes: number, memoryMib: number): number => Math.min(memoryMib, Math.floor(bytes / BYTES_PER_MIB));
const clampedPercent = (percent: number): number => Math.min(100, Math.max(0, percent));

/**
 * Converts a guest's MemoryStats to MiB, clamping every size to the VM's
 * memory: the guest's word is advisory, and a size beyond its memory is a lie
 * or a bug that must not reach the policy or the dashboard.
 */
export function statsView(stats: MemoryStats, memoryMib: number, receivedAtMs: number): GuestStatsView {
  return {
    totalMib: clampedMib(stats.totalBytes, memoryMib),
    freeMib: clampedMib(stats.freeBytes, memoryMib),
    availableMib: clampedMib(stats.availableBytes, memoryMib),
    cacheMib: clampedMib(stats.diskCachesBytes, memoryMib),
    sharedMib: clampedMib(stats.sharedBytes, memoryMib),
    // Swap traffic is a cumulative counter, not a size inside the VM: not clamped.
    swapInMib: Math.floor(stats.swapInBytes / BYTES_PER_MIB),
    swapOutMib: Math.floor(stats.swapOutBytes / BYTES_PER_MIB),
    majorFaults: stats.majorFaults,
    minorFaults: stats.minorFaults,
    psiSomeAvg10Percent: clampedPercent(stats.psiSomeAvg10Percent),
    psiFullAvg10Percent: clampedPercent(stats.psiFullAvg10Percent),
    agentRssMib: Math.floor(stats.agentRssBytes / BYTES_PER_MIB),
    domain: stats.domain,
    receivedAtMs,
  };
}

/** The balloon's size a view shows: a managed guest's pool actual is what its limit holds; its balloon is pinned + handed off. */
export function balloonActualMibOf(poolActualMib: number, guest: GuestFactsView): number {
  return guest.balloonActualMib ?? poolActualMib;
}

/** The balloon's state for the view: the guest's word for the newest generation, else derived. */
export function balloonView(pool: PoolVmView, guest: GuestFactsView): BalloonView {
  const current = guest.status && guest.status.generation === guest.generation ? guest.status : undefined;
  const actualMib = balloonActualMibOf(pool.actualMib, guest);
  const derived = actualMib < pool.targetMib ? 'inflating' : actualMib > pool.targetMib ? 'deflating' : 'steady';
  // The agent's word, capped by what the kernel's limit holds (a managed
  // guest's pool actual: memory − limit, as last read or written).
  const handedOffMib = Math.min(guest.handedOffMib ?? 0, actualMib, pool.actualMib);
  return {
    targetMib: pool.targetMib,
    actualMib,
    lockedMib: Math.min(guest.lockedMib, actualMib - handedOffMib),
    handedOffMib,
    state: current && current.state !== 'unspecified' ? current.state : derived,
    reason: current ? current.reason : 'none',
    lock: guest.status?.lock ?? 'unspecified',
    generation: guest.generation,
  };
}

/** One VM's view: its settings, and while running its balloon, pid, holding and stats. */
export function vmView(record: VmRecord, running?: { pool: PoolVmView; guest: GuestFactsView }): VmView {
  const view: VmView = {
    name: record.name,
    state: running ? 'running' : 'poweroff',
    memoryMib: record.memoryMib,
    defaultBalloonMib: record.defaultBalloonMib,
    pageFusion: record.pageFusion,
    balloonPolicy: record.balloonPolicy,
    memoryMinMib: record.memoryMinMib,
    // The registry stores 0 for "not set"; the API says null, so that 0 never reads as a limit.
    balloonMaxMib: record.balloonMaxMib > 0 ? record.balloonMaxMib : null,
    memoryWeight: record.memoryWeight,
    memoryBufferPercent: record.memoryBufferPercent,
  };
  if (running) {
    view.balloon = balloonView(running.pool, running.guest);
    view.pid = running.guest.pid;
    view.heldMib = running.pool.heldMib;
    if (running.guest.stats) view.stats = running.guest.stats;
    view.sharableMib = 0;
    view.sharedMib = running.guest.stats?.sharedMib ?? 0;
    view.startedAtMs = running.guest.startedAtMs;
  }
  return view;
}
