// The hand-off's thin edge: for each managed guest, reads its cgroup, asks
// the planner (./plan.ts) for the next step, writes the limit and tells the
// agent (HandOffBalloon), one step at a time, re-reading the kernel before
// each. One loop per guest; a status, a target or a new guest wakes it, and
// a newer target is seen at the next batch boundary (latest wins).
import type { Logger } from 'pino';
import { BYTES_PER_MIB, type BalloonStatus } from '@memballoon/protocol';
import { CgroupError } from '../cgroup/errors.js';
import type { MemoryCgroup } from '../cgroup/memory-cgroup.js';
import { handOffReserveMib, impliedLimitMib, limitMibOf, limitShareMibOf, planHandOff, reclaimedMib, usageMibOf, type HandOffStep } from './plan.js';

/** What the driver uses of a guest's memory cgroup. */
export type HandOffCgroup = Pick<MemoryCgroup, 'dir' | 'usageBytes' | 'limitBytes' | 'setLimitBytes'> & Partial<Pick<MemoryCgroup, 'reclaimableBytes'>>;

/** A managed guest as the driver needs it. */
export interface HandOffGuest {
  cgroup: HandOffCgroup;
  memoryMib: number;
  /** The agent's chunk size (Hello's facts). */
  chunkMib: number;
  /** Sends HandOffBalloon on the guest's session. */
  sendHandOff(handedOffMib: number): void;
}

/** Options of the driver. */
export interface HandOffDriverOptions {
  logger: Logger;
  /** Largest batch per round trip to the agent (default 256 MiB). */
  maxBatchMib?: number;
  /** Hand off what an inflating balloon has pinned so far (default true); false waits for the settle. */
  whileInflating?: boolean;
  /** How long a step waits for the agent's status (default 10 s); a silent agent stops the loop until its next status. */
  answerTimeoutMs?: number;
  /** Called whenever what a guest has really given up (reclaimedMib) may have changed. */
  onChange?: (name: string) => void;
  /**
   * MiB the guests' limits may grow by in all now (the pool's size minus
   * the sum of the limits; default: unbounded). A raise is capped by it, so
   * a guest that deflated on its own (pressure) gets its limit back only as
   * the others' limits make room: the limits never sum above the pool.
   */
  raiseRoomMib?: () => number;
}

/** What the driver knows of one guest's hand-off, for views. */
export interface HandOffView {
  /** The cgroup's limit as last read or written, in MiB. */
  limitMib: number;
  /** What the agent says it has handed off. */
  handedOffMib: number;
  /** Handed off and held by the limit: what counts as reclaimed. */
  reclaimedMib: number;
}

interface Entry extends HandOffGuest {
  name: string;
  logger: Logger;
  status: BalloonStatus | null;
  /** Newest generation the host sent. */
  generation: number;
  limitMib: number;
  /** What limitSumMib counts for this guest: limitMib, or the kernel's limit rounded up where it is not whole MiB. */
  shareMib: number;
  running: Promise<void> | null;
  again: boolean;
  detached: boolean;
  wake: Set<() => void>;
}

/** Moves pinned balloons under the guests' cgroup limits, and gives handed-off memory back. */
export class HandOffDriver {
  private readonly guests = new Map<string, Entry>();
  private limitSumMibValue = 0;
  private readonly log: Logger;
  private readonly maxBatchMib: number;
  private readonly whileInflating: boolean;
  private readonly answerTimeoutMs: number;
  private readonly onChange: (name: string) => void;
  private readonly raiseRoomMib: () => number;

  constructor(options: HandOffDriverOptions) {
    this.log = options.logger;
    this.maxBatchMib = options.maxBatchMib ?? 256;
    this.whileInflating = options.whileInflating ?? true;
    this.answerTimeoutMs = options.answerTimeoutMs ?? 10_000;
    this.onChange = options.onChange ?? (() => {});
    this.raiseRoomMib = options.raiseRoomMib ?? (() => Number.POSITIVE_INFINITY);
  }

  /**
   * Takes charge of a managed guest whose session opened: reads its limit
   * back from the kernel (after a host restart, whatever the last host left
   * there) and returns what it has really given up, given the handed-off MiB
   * its Hello reports. The first status then reconciles limit and balloon.
   */
  async attach(name: string, guest: HandOffGuest, hello: { handedOffMib: number; generation: number }): Promise<number> {
    // A step of the previous session still writing would change the limit after our reading.
    await this.detach(name);
    const limitBytes = await this.limitAtMost(guest, name);
    const limitMib = limitMibOf(limitBytes, guest.memoryMib);
    const shareMib = limitShareMibOf(limitBytes, guest.memoryMib);
    // Another attach of this name that finished meanwhile is replaced: its share with it.
    void this.detach(name);
    const entry: Entry = {
      ...guest,
      name,
      logger: this.log.child({ vm: name, cgroup: guest.cgroup.dir }),
      status: null,
      generation: hello.generation,
      limitMib,
      shareMib,
      running: null,
      again: false,
      detached: false,
      wake: new Set(),
    };
    this.guests.set(name, entry);
    this.limitSumMibValue += shareMib;
    // Counted by its limit now, no longer by what the pool says it holds: room may have appeared.
    this.roomChanged(entry);
    entry.logger.info({ limitMib, handedOffMib: hello.handedOffMib }, 'hand-off: guest attached');
    return reclaimedMib(guest.memoryMib, hello.handedOffMib, limitMib);
  }

  /**
   * A guest's limit as it is counted from its attach: its memory at most. An
   * adopted cgroup comes with its admin's own limit (or none), which may be
   * above the VM's memory; the VM holds its memory of the pool and no more,
   * so the limit comes down to it (never below usage: where the kernel
   * refuses, the limit stays and is counted as it is).
   */
  private async limitAtMost(guest: HandOffGuest, name: string): Promise<number | null> {
    const limitBytes = await guest.cgroup.limitBytes();
    const memoryBytes = guest.memoryMib * BYTES_PER_MIB;
    if (limitBytes !== null && limitBytes <= memoryBytes) return limitBytes;
    try {
      await guest.cgroup.setLimitBytes(memoryBytes);
      this.log.info({ vm: name, fromBytes: limitBytes, limitMib: guest.memoryMib }, "hand-off: the cgroup's limit brought down to the VM's memory");
      return memoryBytes;
    } catch (err) {
      if (!(err instanceof CgroupError && err.code === 'limit_below_usage')) throw err;
      this.log.warn({ vm: name, fromBytes: limitBytes, limitMib: guest.memoryMib }, "hand-off: the cgroup uses more than the VM's memory; its limit stays");
      return limitBytes;
    }
  }

  /**
   * The session ended: the loop stops at its next step. The limit stays (a
   * reconnecting agent still has handed off). Resolves once the loop wrote
   * its last limit, so that the launcher can give an adopted cgroup its own
   * limit back without a late step undoing it.
   */
  detach(name: string): Promise<void> {
    const e = this.guests.get(name);
    if (!e) return Promise.resolve();
    e.detached = true;
    this.guests.delete(name);
    this.limitSumMibValue -= e.shareMib;
    for (const w of e.wake) w();
    return e.running ?? Promise.resolve();
  }

  /** Whether a guest is managed (attached). */
  has(name: string): boolean {
    return this.guests.has(name);
  }

  /** A target was sent with this generation: the loop re-plans at its next batch boundary. */
  onTarget(name: string, generation: number): void {
    const e = this.guests.get(name);
    if (!e) return;
    e.generation = generation;
    this.kick(e);
  }

  /** A BalloonStatus from the guest: wakes a step waiting for it, and the loop. */
  onStatus(name: string, status: BalloonStatus): void {
    const e = this.guests.get(name);
    if (!e) return;
    e.status = status;
    for (const w of e.wake) w();
    this.onChange(name);
    this.kick(e);
  }

  /**
   * MemoryStats from the guest: a limit left above the balloon behind a busy
   * workload is retried (the workload may have shrunk). A raise waiting for
   * room is not: only another guest's lowered limit makes room (noteLimit
   * wakes it), and retrying it on every stats frame of every guest cost a
   * scan of the pool each (quadratic in the guests).
   */
  onStats(name: string): void {
    const e = this.guests.get(name);
    if (e?.status && e.limitMib > impliedLimitMib(e.memoryMib, e.status.handedOffMib ?? 0)) this.kick(e);
  }

  /** What a managed guest has given up for real (handed off and held by its limit), or undefined when not managed. */
  view(name: string): HandOffView | undefined {
    const e = this.guests.get(name);
    if (!e) return undefined;
    const handedOffMib = e.status?.handedOffMib ?? 0;
    return { limitMib: e.limitMib, handedOffMib, reclaimedMib: reclaimedMib(e.memoryMib, handedOffMib, e.limitMib) };
  }

  /** Resolves once every guest's loop is idle (tests, benchmarks). */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [...this.guests.values()].map((e) => e.running).filter((p): p is Promise<void> => p !== null);
      if (busy.length === 0) return;
      await Promise.all(busy);
    }
  }

  private kick(e: Entry): void {
    if (e.running) {
      e.again = true;
      return;
    }
    e.running = this.run(e)
      .catch((err: unknown) => e.logger.error({ err }, 'hand-off loop failed; the next status retries'))
      .finally(() => {
        e.running = null;
        if (e.again && !e.detached) {
          e.again = false;
          this.kick(e);
        }
      });
  }

  private async run(e: Entry): Promise<void> {
    // Bounded: a limit that keeps meeting a growing usage (EBUSY) or an agent
    // that keeps falling short waits for the next status instead of spinning.
    for (let steps = 0; steps < 1024 && !e.detached; steps++) {
      e.again = false;
      const st = e.status;
      if (!st) return;
      const handedOffMib = st.handedOffMib ?? 0;
      // Only a balloon of the newest target that is not deflating is handed
      // off further (an inflating one as far as it has pinned, keeping the
      // headroom it has yet to take); otherwise only what it has handed off
      // already is honoured.
      const current = st.generation === e.generation && st.state !== 'deflating' && (this.whileInflating || st.state !== 'inflating');
      const wantHandedOffMib = current ? Math.min(st.targetMib, st.actualMib) : handedOffMib;
      const inflatingMib = current ? inflatingMibOf(st) : 0;
      // Nothing a kernel reading could change: the limit is where the balloon
      // says and less than a chunk is left to hand off (most statuses and
      // stats frames): no cgroup read at all.
      if (e.limitMib === impliedLimitMib(e.memoryMib, handedOffMib) && wantHandedOffMib - handedOffMib < Math.max(1, e.chunkMib)) return;
      const readStartMs = performance.now();
      const [limitBytes, usageBytes, reclaimableBytes] = await Promise.all([e.cgroup.limitBytes(), e.cgroup.usageBytes(), this.reclaimableBytesOf(e)]);
      const readMs = performance.now() - readStartMs;
      this.noteLimit(e, limitMibOf(limitBytes, e.memoryMib), limitShareMibOf(limitBytes, e.memoryMib));
      const step = planHandOff({
        memoryMib: e.memoryMib,
        chunkMib: e.chunkMib,
        limitMib: e.limitMib,
        usageMib: usageMibOf(usageBytes),
        reclaimableMib: Math.floor(reclaimableBytes / BYTES_PER_MIB),
        handedOffMib,
        pinnedMib: Math.max(0, st.actualMib - handedOffMib),
        wantHandedOffMib,
        maxBatchMib: this.maxBatchMib,
        reserveMib: handOffReserveMib(e.memoryMib),
        inflatingMib,
      });
      if (step.kind === 'done') return;
      const stepStartMs = performance.now();
      const ok = await this.apply(e, step, usageMibOf(usageBytes));
      // Where a hand-off's time goes (issue 18's split): kernel reads, the step's writes and the agent's round trip.
      e.logger.debug({ step: step.kind, limitMib: e.limitMib, readMs: round(readMs), stepMs: round(performance.now() - stepStartMs) }, 'hand-off: step');
      if (!ok) return;
    }
  }

  /** Does one step; false when the loop should wait for news (EBUSY, an agent that did not answer). */
  private async apply(e: Entry, step: Exclude<HandOffStep, { kind: 'done' }>, usageMib: number): Promise<boolean> {
    switch (step.kind) {
      case 'raise':
        // No room yet (false): retried when another guest's limit comes down.
        return this.setLimit(e, step.limitMib);
      case 'catch-up':
        return this.setLimit(e, step.limitMib);
      case 'lower-then-release': {
        // Refused at or above usage: the workload grew meanwhile, re-plan. Below
        // it, the kernel could not drop the cache the plan counted on: wait for news.
        if (!(await this.setLimit(e, step.limitMib))) return step.limitMib >= usageMib;
        return this.release(e, step.handedOffMib);
      }
      case 'release-then-lower': {
        if (!(await this.release(e, step.handedOffMib))) return false;
        const [usageBytes, reclaimableBytes] = await Promise.all([e.cgroup.usageBytes(), this.reclaimableBytesOf(e)]);
        const usedMib = Math.max(0, usageMibOf(usageBytes) - Math.floor(reclaimableBytes / BYTES_PER_MIB));
        // A target that came meanwhile may be inflating the balloon: leave it the room it has yet to take.
        const st = e.status;
        const inflatingMib = st && st.generation === e.generation ? inflatingMibOf(st) : 0;
        const to = Math.max(usedMib + handOffReserveMib(e.memoryMib) + inflatingMib, step.limitMib);
        return to < e.limitMib ? this.setLimit(e, to) : true;
      }
    }
  }

  /**
   * Writes a limit: the one place that keeps the guests' limits within the
   * pool. The sum the room is computed from (limitSumMib) is never below
   * what the kernel holds: a raise is capped by the room left and counted
   * before its write, so that a raise planned meanwhile (every guest waiting
   * for room wakes at once when a limit comes down) sees that room taken; a
   * lower is counted once the kernel took it, since until then the old limit
   * holds. False (and nothing changed) when there is no room for a raise or
   * the kernel says a lower is below usage now.
   */
  private async setLimit(e: Entry, wantedMib: number): Promise<boolean> {
    const fromMib = e.limitMib;
    const fromShareMib = e.shareMib;
    const raise = wantedMib > fromMib;
    const limitMib = raise ? Math.min(wantedMib, fromMib + Math.max(0, Math.floor(this.raiseRoomMib()))) : wantedMib;
    if (raise) {
      if (limitMib <= fromMib) return false;
      this.noteLimit(e, limitMib);
      e.logger.info({ fromMib, limitMib, wantedMib }, 'hand-off: limit raised (balloon deflated)');
    }
    const startMs = performance.now();
    try {
      await e.cgroup.setLimitBytes(limitMib * BYTES_PER_MIB);
      e.logger.debug({ limitMib, writeMs: round(performance.now() - startMs) }, 'hand-off: limit written');
    } catch (err) {
      // The kernel kept the old limit: so does the sum (a raise gives its room back).
      if (raise) this.noteLimit(e, fromMib, fromShareMib);
      // v1's EBUSY, or v2's usage check.
      if (err instanceof CgroupError && err.code === 'limit_below_usage') {
        // The workload grew between our reading and the write: re-read and re-plan.
        e.logger.debug({ limitMib }, 'hand-off: limit below usage now; re-planning');
        return false;
      }
      throw err;
    }
    this.noteLimit(e, limitMib);
    return true;
  }

  /** The guest's inactive file cache (0 where the cgroup cannot say): headroom the kernel frees when the limit comes down on it. */
  private reclaimableBytesOf(e: Entry): Promise<number> {
    return e.cgroup.reclaimableBytes ? e.cgroup.reclaimableBytes().catch(() => 0) : Promise.resolve(0);
  }

  /** Asks the agent to hand off up to handedOffMib and waits for its status; false if it did not answer in time. */
  private async release(e: Entry, handedOffMib: number): Promise<boolean> {
    const before = e.status?.handedOffMib ?? 0;
    const sentMs = performance.now();
    const answered = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => done(false), this.answerTimeoutMs);
      // The agent answers with a status: all it asked for, or less (it
      // stopped short: the next plan raises the limit back by the rest).
      const check = () => {
        if (e.detached) done(false);
        else if ((e.status?.handedOffMib ?? 0) !== before || e.status?.generation !== e.generation) done(true);
      };
      const done = (v: boolean) => {
        clearTimeout(timer);
        e.wake.delete(check);
        resolve(v);
      };
      e.wake.add(check);
    });
    e.sendHandOff(handedOffMib);
    const ok = await answered;
    e.logger.debug(
      { fromMib: before, handedOffMib, answeredMib: e.status?.handedOffMib ?? 0, roundTripMs: round(performance.now() - sentMs) },
      'hand-off: agent answered',
    );
    if (!ok && !e.detached)
      e.logger.warn({ handedOffMib, timeoutMs: this.answerTimeoutMs }, 'hand-off: the agent did not answer; the limit stays until its next status');
    return ok;
  }

  /** Counts a guest's limit (limitMib for planning, shareMib for limitSumMib); a lower wakes the guests waiting for room. */
  private noteLimit(e: Entry, limitMib: number, shareMib = limitMib): void {
    if (limitMib === e.limitMib && shareMib === e.shareMib) return;
    const lowered = shareMib < e.shareMib;
    // A step finishing after its guest detached changes nothing the pool counts.
    if (!e.detached) this.limitSumMibValue += shareMib - e.shareMib;
    const changed = limitMib !== e.limitMib;
    e.limitMib = limitMib;
    e.shareMib = shareMib;
    if (changed) this.onChange(e.name);
    if (lowered) this.roomChanged(e);
  }

  /** Room under the pool may have grown (a lowered limit, a start that ended): wakes each guest waiting for a raise but `except`. */
  roomChanged(except?: HandOffGuest): void {
    for (const other of this.guests.values()) {
      if (other !== except && other.status && other.limitMib < other.memoryMib - (other.status.handedOffMib ?? 0)) this.kick(other);
    }
  }

  /** Sum of the managed guests' limits as last read or written (a raise from before its write), in MiB: never below the kernel's (see setLimit). */
  limitSumMib(): number {
    return this.limitSumMibValue;
  }
}

/** MiB an inflating balloon has yet to pin (0 when it is not inflating). */
function inflatingMibOf(st: BalloonStatus): number {
  return st.state === 'inflating' ? Math.max(0, st.targetMib - st.actualMib) : 0;
}

/** Milliseconds to a tenth, for the debug log. */
function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
