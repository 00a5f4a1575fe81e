// Turns the service's state into the JSON views of ./views.ts (the read model). Pure.
import type { BalloonStatus, MemoryStats } from '@memballoon/protocol';
import type { BalloonView, GuestStatsView, VmView } from './views.js';
import type { PoolVmView } from '../pool/pool.js';
import type { VmRecord } from '../registry/registry.js';
import type { ManagedGuestView } from '../guests/views.js';
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

// Module-level, not closures made per call: writeStatsView runs for every stats
// frame (1,000 a second at 1,000 guests).
const clampedMib = (bytes: number, memoryMib: number): number => Math.min(memoryMib, Math.floor(bytes / BYTES_PER_MIB));
const clampedPercent = (percent: number): number => Math.min(100, Math.max(0, percent));

/**
 * Converts a guest's MemoryStats to MiB, clamping every size to the VM's
 * memory: the guest's word is advisory, and a size beyond its memory is a lie
 * or a bug that must not reach the policy or the dashboard. Written into
 * `into` when there is one (and returned): the service keeps one per guest
 * and overwrites it with each stats frame. A new object a second per guest
 * lived just long enough to be promoted out of V8's young generation, so
 * each was work for the old generation's collector (whose helper threads
 * took ~4 % of a core at 1,000 guests). Views copy it (vmView), so a view
 * taken earlier keeps its figures.
 */
export function writeStatsView(into: GuestStatsView | undefined, stats: MemoryStats, memoryMib: number, receivedAtMs: number): GuestStatsView {
  const v: GuestStatsView = into ?? {
    totalMib: 0,
    freeMib: 0,
    availableMib: 0,
    cacheMib: 0,
    sharedMib: 0,
    swapInMib: 0,
    swapOutMib: 0,
    majorFaults: 0,
    minorFaults: 0,
    psiSomeAvg10Percent: 0,
    psiFullAvg10Percent: 0,
    agentRssMib: 0,
    domain: stats.domain,
    receivedAtMs,
  };
  v.totalMib = clampedMib(stats.totalBytes, memoryMib);
  v.freeMib = clampedMib(stats.freeBytes, memoryMib);
  v.availableMib = clampedMib(stats.availableBytes, memoryMib);
  v.cacheMib = clampedMib(stats.diskCachesBytes, memoryMib);
  v.sharedMib = clampedMib(stats.sharedBytes, memoryMib);
  // Swap traffic is a cumulative counter, not a size inside the VM: not clamped.
  v.swapInMib = Math.floor(stats.swapInBytes / BYTES_PER_MIB);
  v.swapOutMib = Math.floor(stats.swapOutBytes / BYTES_PER_MIB);
  v.majorFaults = stats.majorFaults;
  v.minorFaults = stats.minorFaults;
  v.psiSomeAvg10Percent = clampedPercent(stats.psiSomeAvg10Percent);
  v.psiFullAvg10Percent = clampedPercent(stats.psiFullAvg10Percent);
  v.agentRssMib = Math.floor(stats.agentRssBytes / BYTES_PER_MIB);
  v.domain = stats.domain;
  v.receivedAtMs = receivedAtMs;
  return v;
}

/**
 * A guest's latest BalloonStatus, copied into `into` when there is one (and
 * returned): kept per guest until the next status, a decoded frame would
 * live long enough to be promoted to V8's old generation (see writeStatsView).
 */
export function writeStatus(into: BalloonStatus | undefined, status: BalloonStatus): BalloonStatus {
  // One shape for every guest's copy (the decoded frame may lack handedOffMib).
  const v: BalloonStatus = into ?? {
    generation: 0,
    targetMib: 0,
    actualMib: 0,
    lockedMib: 0,
    handedOffMib: undefined,
    state: status.state,
    reason: status.reason,
    lock: status.lock,
    detail: '',
  };
  v.generation = status.generation;
  v.targetMib = status.targetMib;
  v.actualMib = status.actualMib;
  v.lockedMib = status.lockedMib;
  v.handedOffMib = status.handedOffMib;
  v.state = status.state;
  v.reason = status.reason;
  v.lock = status.lock;
  v.detail = status.detail;
  return v;
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

/** What the service adds to a VM's view beyond its record and running guest. */
export interface VmViewExtras {
  /** startvm is starting its guest (shown only while it is powered off). */
  starting?: boolean;
  /** Page fusion's figure for a running VM (0 without page fusion). */
  sharableMib?: number;
  /** The guest the host owns for this VM. */
  managed?: ManagedGuestView;
}

/**
 * One VM's view: its settings, and while running its balloon, pid, holding
 * and stats. The order its fields are made in is the order of its JSON text
 * (view-json.ts writes them in that order).
 */
export function vmView(record: VmRecord, running?: { pool: PoolVmView; guest: GuestFactsView }, extras?: VmViewExtras): VmView {
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
    // A copy: the guest's figures are overwritten in place by its next stats frame.
    if (running.guest.stats) view.stats = { ...running.guest.stats };
    view.sharableMib = extras?.sharableMib ?? 0;
    view.sharedMib = running.guest.stats?.sharedMib ?? 0;
    view.startedAtMs = running.guest.startedAtMs;
  } else if (extras?.starting) view.starting = true;
  if (extras?.managed) view.managed = extras.managed;
  return view;
}
