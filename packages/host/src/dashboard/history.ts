// A short, bounded history of each running VM's balloon for the dashboard's
// charts, so a page load draws the last minutes at once instead of starting
// empty. Pure (no timers, no sockets): the dashboard feeds it snapshots.
//
// Bounds: at most `capacity` points per VM in a ring buffer of fixed size
// (default 900: 15 minutes at the guests' 1 s stats cadence; the dashboard
// samples at most once per `SAMPLE_INTERVAL_MS`), and a point only when
// something changed (target, actual or available): a quiet VM costs nothing,
// and the page extends its last point to "now". Points older than `windowMs` are not
// served. A VM that stops running loses its history (the page shows charts
// only for running VMs). Memory: a ring starts at 16 points and doubles up to
// its capacity: 900 points × 4 numbers × 8 bytes ≈ 29 kB per running VM at
// most, far less for a quiet one.
import type { VmView } from '../service/views.js';

/** Options of VmHistory. */
export interface VmHistoryOptions {
  /** Points kept per VM (default 900). */
  capacity?: number;
  /** How far back points are served (default 15 minutes). */
  windowMs?: number;
}

/** One VM's points as columns (what the page's uPlot charts take). */
export interface VmHistorySeries {
  atMs: number[];
  targetMib: number[];
  actualMib: number[];
  /** null where the guest had not reported its statistics yet. */
  availableMib: Array<number | null>;
}

/** The `history` event: every running VM's series, oldest first. */
export interface HistoryEvent {
  windowMs: number;
  vms: Record<string, VmHistorySeries>;
}

/** Points a ring starts with; it doubles up to its capacity, so a quiet VM costs little. */
const INITIAL_POINTS = 16;

/** A ring of at most `capacity` points: [atMs, targetMib, actualMib, availableMib (NaN: none)]. */
class Ring {
  #data: Float64Array;
  #start = 0;
  #size = 0;
  constructor(readonly capacity: number) {
    this.#data = new Float64Array(Math.min(capacity, INITIAL_POINTS) * 4);
  }

  get size(): number {
    return this.#size;
  }

  push(atMs: number, targetMib: number, actualMib: number, availableMib: number): void {
    const slots = this.#data.length / 4;
    if (this.#size === slots && slots < this.capacity) {
      // Grow (only before the ring has wrapped: #start is still 0).
      const grown = new Float64Array(Math.min(this.capacity, slots * 2) * 4);
      grown.set(this.#data);
      this.#data = grown;
    }
    const length = this.#data.length / 4;
    const slot = ((this.#start + this.#size) % length) * 4;
    // Four stores, not set([...]): no array per point.
    this.#data[slot] = atMs;
    this.#data[slot + 1] = targetMib;
    this.#data[slot + 2] = actualMib;
    this.#data[slot + 3] = availableMib;
    if (this.#size < length) this.#size++;
    else this.#start = (this.#start + 1) % length;
  }

  /** The i-th point from the oldest. */
  at(i: number, field: 0 | 1 | 2 | 3): number {
    return this.#data[((this.#start + i) % (this.#data.length / 4)) * 4 + field]!;
  }
}

interface Track {
  ring: Ring;
  startedAtMs: number | undefined;
  lastTargetMib: number;
  lastActualMib: number;
  /** NaN: no statistics yet. */
  lastAvailableMib: number;
  /** The sampling round that last saw the VM running. */
  seenRound: number;
}

/** Receives one running VM's figures: what `VmHistory.sample` asks its source for. */
export type HistoryPointVisitor = (
  name: string,
  startedAtMs: number | undefined,
  targetMib: number,
  actualMib: number,
  availableMib: number | undefined,
) => void;

/** Per-VM bounded balloon history, fed from host snapshots. */
export class VmHistory {
  readonly capacity: number;
  readonly windowMs: number;
  readonly #tracks = new Map<string, Track>();
  #round = 0;
  #atMs = 0;
  // Made once: a closure per sample would be one more allocation a second.
  readonly #visit: HistoryPointVisitor = (name, startedAtMs, targetMib, actualMib, availableMib) =>
    this.#point(name, startedAtMs, targetMib, actualMib, availableMib ?? Number.NaN);

  constructor(options: VmHistoryOptions = {}) {
    this.capacity = options.capacity ?? 900;
    this.windowMs = options.windowMs ?? 15 * 60_000;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new RangeError(`history capacity must be a whole number above 0 (got ${this.capacity})`);
  }

  /** Records a point for each running VM whose figures changed since its last one; forgets VMs that stopped. */
  record(vms: readonly VmView[], atMs: number): void {
    this.sample((visit) => {
      for (const vm of vms) {
        if (vm.state !== 'running' || !vm.balloon) continue;
        visit(vm.name, vm.startedAtMs, vm.balloon.targetMib, vm.balloon.actualMib, vm.stats?.availableMib);
      }
    }, atMs);
  }

  /**
   * As `record`, with the figures from `source`, which calls its visitor once
   * per running VM: the host passes them without building a VmView of every
   * VM each second (the numbers are all the history keeps).
   */
  sample(source: (visit: HistoryPointVisitor) => void, atMs: number): void {
    this.#round++;
    this.#atMs = atMs;
    source(this.#visit);
    for (const [name, track] of this.#tracks) if (track.seenRound !== this.#round) this.#tracks.delete(name);
  }

  #point(name: string, startedAtMs: number | undefined, targetMib: number, actualMib: number, availableMib: number): void {
    let track = this.#tracks.get(name);
    // A new session is a new history: the old one belongs to another run.
    if (track === undefined || track.startedAtMs !== startedAtMs) {
      track = {
        ring: new Ring(this.capacity),
        startedAtMs,
        lastTargetMib: Number.NaN,
        lastActualMib: Number.NaN,
        lastAvailableMib: Number.NaN,
        seenRound: this.#round,
      };
      this.#tracks.set(name, track);
    } else {
      track.seenRound = this.#round;
      if (same(track.lastTargetMib, targetMib) && same(track.lastActualMib, actualMib) && same(track.lastAvailableMib, availableMib)) return;
    }
    track.ring.push(this.#atMs, targetMib, actualMib, availableMib);
    track.lastTargetMib = targetMib;
    track.lastActualMib = actualMib;
    track.lastAvailableMib = availableMib;
  }

  /** Points kept for a VM (for tests and limits). */
  sizeOf(name: string): number {
    return this.#tracks.get(name)?.ring.size ?? 0;
  }

  /** The history event: each running VM's points within the window before `nowMs`. */
  event(nowMs: number): HistoryEvent {
    const vms: Record<string, VmHistorySeries> = {};
    const since = nowMs - this.windowMs;
    for (const [name, { ring }] of this.#tracks) {
      const series: VmHistorySeries = { atMs: [], targetMib: [], actualMib: [], availableMib: [] };
      for (let i = 0; i < ring.size; i++) {
        const at = ring.at(i, 0);
        if (at < since) continue;
        const available = ring.at(i, 3);
        series.atMs.push(at);
        series.targetMib.push(ring.at(i, 1));
        series.actualMib.push(ring.at(i, 2));
        series.availableMib.push(Number.isNaN(available) ? null : available);
      }
      vms[name] = series;
    }
    return { windowMs: this.windowMs, vms };
  }
}

function same(a: number, b: number): boolean {
  return a === b || (Number.isNaN(a) && Number.isNaN(b));
}
