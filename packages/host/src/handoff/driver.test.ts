// The hand-off planner and driver against a fake cgroup that models what the
// kernel does with a v1 memory cgroup (usage, limit, EBUSY below usage) and
// a fake agent that releases chunks the way the real one does.
import pino from 'pino';
import { CgroupError } from '../cgroup/errors.js';
import { describe, expect, it } from 'vitest';
import type { BalloonStatus } from '@memballoon/protocol';
import { HandOffDriver, type HandOffCgroup } from './driver.js';
import { handOffReserveMib, handOffWhileInflatingByDefault, INFLATING_MAX_BATCH_MIB, INFLATING_MIN_BATCH_MIB, planHandOff, reclaimedMib } from './plan.js';

const MIB = 1024 * 1024;
const logger = pino({ level: 'silent' });

/** A guest: a cgroup with a workload, and an agent with a balloon of pinned + handed-off MiB. */
class FakeGuest implements HandOffCgroup {
  readonly dir = '/fake/memballoon/vm';
  /** The guest's name with the driver. */
  name = 'vm';
  limitMib: number;
  workloadMib: number;
  pinnedMib = 0;
  handedOffMib = 0;
  targetMib = 0;
  generation = 1;
  /** Called before every read of usage: a workload that moves between our reading and our write. */
  beforeUsageRead: () => void = () => {};
  /** Called after every release: a workload that grabs what it can. */
  afterRelease: () => void = () => {};
  /** Every limit the kernel accepted, with the usage at that moment. */
  readonly writes: Array<{ limitMib: number; usageMib: number }> = [];
  ebusy = 0;
  /** Called after every limit the kernel accepted (a pool checking the sum of its children's). */
  afterWrite: () => void = () => {};
  /** Limit writes answer on a later turn of the event loop, as a busy kernel's may. */
  slowWrites = false;
  /** The next limit write fails with this (an I/O error), and the limit stays. */
  failNextWrite: Error | null = null;
  /** Largest and smallest headroom (limit − usage) seen after any change. */
  maxSlackMib = 0;
  minSlackMib = Number.POSITIVE_INFINITY;
  answering = true;
  /** The balloon's state in the statuses it sends. */
  state: BalloonStatus['state'] = 'steady';
  /** Largest headroom beyond what the guest would have with no hand-off at all (memory − workload − balloon); the rule wants ≤ 0. */
  maxExtraSlackMib = Number.NEGATIVE_INFINITY;
  /** Smallest room left for the balloon to finish inflating beyond the reserve (limit − usage − (target − actual) − reserve). */
  minInflateRoomMib = Number.POSITIVE_INFINITY;
  driver!: HandOffDriver;

  constructor(
    readonly memoryMib: number,
    workloadMib: number,
  ) {
    this.limitMib = memoryMib;
    this.workloadMib = workloadMib;
  }

  get usageMib(): number {
    return this.workloadMib + this.pinnedMib;
  }

  private noteSlack(): void {
    this.maxSlackMib = Math.max(this.maxSlackMib, this.limitMib - this.usageMib);
    this.minSlackMib = Math.min(this.minSlackMib, this.limitMib - this.usageMib);
    const actualMib = this.pinnedMib + this.handedOffMib;
    this.maxExtraSlackMib = Math.max(this.maxExtraSlackMib, this.limitMib - this.usageMib - (this.memoryMib - this.workloadMib - actualMib));
    if (this.state === 'inflating') {
      const toPinMib = Math.max(0, this.targetMib - actualMib);
      this.minInflateRoomMib = Math.min(this.minInflateRoomMib, this.limitMib - this.usageMib - toPinMib - handOffReserveMib(this.memoryMib));
    }
  }

  async usageBytes(): Promise<number> {
    this.beforeUsageRead();
    return this.usageMib * MIB;
  }

  async limitBytes(): Promise<number | null> {
    // As startvm leaves it: the VM's memory at most (no 'max': an unlimited cgroup is brought down at attach).
    return this.limitMib * MIB;
  }

  async setLimitBytes(bytes: number | null): Promise<void> {
    const mib = bytes === null ? this.memoryMib : bytes / MIB;
    // The write's system call: its result comes back later (other guests' steps run meanwhile).
    if (this.slowWrites) await new Promise<void>((r) => setImmediate(r));
    const fail = this.failNextWrite;
    this.failNextWrite = null;
    if (fail) throw fail;
    // v1: below usage the kernel tries to reclaim, fails (all anonymous, no
    // swap) and answers EBUSY; the limit stays.
    if (mib < this.usageMib) {
      this.ebusy++;
      throw new CgroupError('limit_below_usage', 'EBUSY');
    }
    this.limitMib = mib;
    this.writes.push({ limitMib: mib, usageMib: this.usageMib });
    this.noteSlack();
    this.afterWrite();
  }

  status(): BalloonStatus {
    const actualMib = this.pinnedMib + this.handedOffMib;
    return {
      generation: this.generation,
      targetMib: this.targetMib,
      actualMib,
      lockedMib: this.pinnedMib,
      handedOffMib: this.handedOffMib,
      state: this.state,
      reason: 'none',
      lock: 'locked',
      detail: '',
    };
  }

  /** The agent pins a balloon of `mib` (inflate to target) and reports. */
  inflate(mib: number): void {
    // The real cgroup would refuse to charge past the limit: the agent's floor keeps it below.
    if (this.usageMib + mib > this.limitMib) throw new Error('the fake balloon does not fit the limit');
    this.targetMib = this.handedOffMib + this.pinnedMib + mib;
    this.pinnedMib += mib;
    this.generation++;
    this.driver.onTarget(this.name, this.generation);
    this.driver.onStatus(this.name, this.status());
  }

  /**
   * The agent inflates toward a new target `mib` above what it holds, `stepMib`
   * at a time (a worker batch), reporting progress after each step as the
   * real one does, and settles. Throws if a step would not fit the limit
   * (the real cgroup would reclaim, fail and OOM-kill).
   */
  async inflateGradually(mib: number, stepMib: number, onStep: () => void = () => {}): Promise<void> {
    this.generation++;
    this.targetMib = this.handedOffMib + this.pinnedMib + mib;
    this.state = 'inflating';
    this.driver.onTarget(this.name, this.generation);
    for (let left = mib; left > 0; left -= stepMib) {
      const step = Math.min(stepMib, left);
      if (this.usageMib + step > this.limitMib)
        throw new Error(`the balloon's step of ${step} MiB does not fit: usage ${this.usageMib}, limit ${this.limitMib}`);
      this.pinnedMib += step;
      this.noteSlack();
      onStep();
      if (left - step > 0) this.driver.onStatus(this.name, this.status());
      // The agent's next step comes after whatever the socket delivered meanwhile.
      await new Promise<void>((r) => setImmediate(r));
    }
    this.state = 'steady';
    this.driver.onStatus(this.name, this.status());
  }

  /** A new, lower target: the agent deflates handed-off MiB first, with no page work. */
  deflateTo(targetMib: number): void {
    this.generation++;
    this.targetMib = targetMib;
    this.driver.onTarget(this.name, this.generation);
    let excess = this.pinnedMib + this.handedOffMib - targetMib;
    const fromHanded = Math.min(excess, this.handedOffMib);
    this.handedOffMib -= fromHanded;
    excess -= fromHanded;
    this.pinnedMib -= Math.max(0, excess);
    this.driver.onStatus(this.name, this.status());
  }

  sendHandOff(handedOffMib: number): void {
    if (!this.answering) return;
    // Over the socket: the answer comes later.
    setImmediate(() => {
      const moveMib = Math.max(0, Math.min(handedOffMib - this.handedOffMib, this.pinnedMib));
      this.pinnedMib -= moveMib;
      this.handedOffMib += moveMib;
      this.noteSlack();
      this.afterRelease();
      this.noteSlack();
      this.driver.onStatus(this.name, this.status());
    });
  }
}

async function setUp(memoryMib: number, workloadMib: number, options: { maxBatchMib?: number; answerTimeoutMs?: number } = {}) {
  const g = new FakeGuest(memoryMib, workloadMib);
  g.driver = new HandOffDriver({ logger, ...options });
  const reclaimed = await g.driver.attach(
    'vm',
    { cgroup: g, memoryMib, chunkMib: 1, sendHandOff: (mib) => g.sendHandOff(mib) },
    { handedOffMib: 0, generation: 1 },
  );
  expect(reclaimed).toBe(0);
  return g;
}

describe('hand-off planner', () => {
  const base = {
    memoryMib: 1024,
    chunkMib: 1,
    limitMib: 1024,
    usageMib: 862,
    handedOffMib: 0,
    pinnedMib: 512,
    wantHandedOffMib: 512,
    maxBatchMib: 256,
    reserveMib: handOffReserveMib(1024),
  };

  it('lowers the limit first by what the slack allows beyond the reserve, then releases that much', () => {
    expect(base.reserveMib).toBe(41);
    expect(planHandOff(base)).toEqual({ kind: 'lower-then-release', limitMib: 1024 - 121, handedOffMib: 121, batchMib: 121 });
    expect(planHandOff({ ...base, usageMib: 300 })).toEqual({ kind: 'lower-then-release', limitMib: 768, handedOffMib: 256, batchMib: 256 });
  });

  it('counts inactive file cache as headroom: a cgroup full of cache is lowered into it in batches, never below usage less that cache plus the reserve', () => {
    // 1024 used, 400 of it inactive file cache: as if 624 were used.
    expect(planHandOff({ ...base, usageMib: 1024, reclaimableMib: 400 })).toEqual({
      kind: 'lower-then-release',
      limitMib: 768,
      handedOffMib: 256,
      batchMib: 256,
    });
    expect(planHandOff({ ...base, usageMib: 1024, reclaimableMib: 100 })).toEqual({
      kind: 'lower-then-release',
      limitMib: 1024 - 59,
      handedOffMib: 59,
      batchMib: 59,
    });
    // A catch-up too goes down into the cache, never below what is used besides it plus the reserve.
    expect(planHandOff({ ...base, limitMib: 1000, handedOffMib: 512, pinnedMib: 0, usageMib: 900, reclaimableMib: 600 })).toEqual({
      kind: 'catch-up',
      limitMib: 512,
    });
    expect(planHandOff({ ...base, limitMib: 1000, handedOffMib: 512, pinnedMib: 0, usageMib: 900, reclaimableMib: 200 })).toEqual({
      kind: 'catch-up',
      limitMib: 741,
    });
  });

  it('releases one chunk first when there is no slack for one, and never plans a limit below usage', () => {
    expect(planHandOff({ ...base, usageMib: 1024 })).toEqual({ kind: 'release-then-lower', limitMib: 1023, handedOffMib: 1, batchMib: 1 });
    expect(planHandOff({ ...base, usageMib: 1024, chunkMib: 4 })).toMatchObject({ kind: 'release-then-lower', handedOffMib: 4 });
  });

  it('raises a limit below what the balloon implies before anything else, and catches up a limit above it only down to usage', () => {
    expect(planHandOff({ ...base, limitMib: 900, handedOffMib: 100, pinnedMib: 412 })).toEqual({ kind: 'raise', limitMib: 924 });
    expect(planHandOff({ ...base, limitMib: 1000, handedOffMib: 100, pinnedMib: 412, usageMib: 950 })).toEqual({ kind: 'catch-up', limitMib: 991 });
    // Behind and no way to catch up: wait (one chunk of exposure in all), release nothing more.
    expect(planHandOff({ ...base, limitMib: 1000, handedOffMib: 100, pinnedMib: 412, usageMib: 1000 })).toEqual({ kind: 'done' });
    // Never into the reserve either: 960 + 41 is above the limit already.
    expect(planHandOff({ ...base, limitMib: 1000, handedOffMib: 100, pinnedMib: 412, usageMib: 960 })).toEqual({ kind: 'done' });
  });

  it('is done when everything wanted is handed off, and never hands off more than is pinned', () => {
    expect(planHandOff({ ...base, limitMib: 512, handedOffMib: 512, pinnedMib: 0, usageMib: 350 })).toEqual({ kind: 'done' });
    expect(planHandOff({ ...base, wantHandedOffMib: 2000, usageMib: 100 })).toMatchObject({ handedOffMib: 256 });
    expect(planHandOff({ ...base, wantHandedOffMib: 2000, usageMib: 100, maxBatchMib: 4096 })).toMatchObject({ handedOffMib: 512 });
  });

  it('while the balloon still inflates, hands off what it has pinned only within the slack beyond the reserve and what it has yet to pin', () => {
    // 300 MiB pinned of a 600 MiB target, usage 500: slack 1024 − 500 − 41 = 483, of which 300 are the balloon's still.
    const inflating = { ...base, usageMib: 500, pinnedMib: 300, wantHandedOffMib: 300, inflatingMib: 300 };
    expect(planHandOff({ ...inflating, usageMib: 683 - 20 })).toEqual({ kind: 'lower-then-release', limitMib: 1024 - 20, handedOffMib: 20, batchMib: 20 });
    // More slack: batches of at most INFLATING_MAX_BATCH_MIB (the agent's release must not starve its inflating workers).
    expect(planHandOff(inflating)).toEqual({
      kind: 'lower-then-release',
      limitMib: 1024 - INFLATING_MAX_BATCH_MIB,
      handedOffMib: INFLATING_MAX_BATCH_MIB,
      batchMib: INFLATING_MAX_BATCH_MIB,
    });
    // No slack beyond what it still needs: no release-first while it inflates (it would take the chunk itself); wait for the settle.
    expect(planHandOff({ ...inflating, usageMib: 700 })).toEqual({ kind: 'done' });
    // Slack for less than a batch worth its round trip: wait too.
    expect(planHandOff({ ...inflating, usageMib: 683 - INFLATING_MIN_BATCH_MIB + 1 })).toEqual({ kind: 'done' });
    expect(planHandOff({ ...inflating, usageMib: 683 - INFLATING_MIN_BATCH_MIB })).toMatchObject({
      kind: 'lower-then-release',
      batchMib: INFLATING_MIN_BATCH_MIB,
    });
    // Settled, the same guest gets release-first.
    expect(planHandOff({ ...inflating, usageMib: 1000, inflatingMib: 0 })).toMatchObject({ kind: 'release-then-lower' });
    // A catch-up leaves it the room too.
    expect(planHandOff({ ...inflating, limitMib: 1000, handedOffMib: 100, pinnedMib: 200, usageMib: 500 })).toEqual({ kind: 'catch-up', limitMib: 924 });
    expect(planHandOff({ ...inflating, limitMib: 1000, handedOffMib: 100, pinnedMib: 200, usageMib: 500, inflatingMib: 400 })).toEqual({
      kind: 'catch-up',
      limitMib: 941,
    });
  });

  it('counts as reclaimed only what is both handed off and held by the limit', () => {
    expect(reclaimedMib(1024, 512, 512)).toBe(512);
    expect(reclaimedMib(1024, 512, 700)).toBe(324);
    expect(reclaimedMib(1024, 100, 512)).toBe(100);
  });
});

describe('hand-off driver against a fake cgroup', () => {
  it('hands a pinned balloon off in batches: limit = memory − B at the end, no write below usage, the headroom never grows', async () => {
    const g = await setUp(1024, 350);
    g.inflate(512);
    const slackBefore = g.limitMib - g.usageMib;
    await g.driver.idle();
    expect({ limit: g.limitMib, handed: g.handedOffMib, pinned: g.pinnedMib }).toEqual({ limit: 512, handed: 512, pinned: 0 });
    expect(g.ebusy).toBe(0);
    for (const w of g.writes) expect(w.limitMib).toBeGreaterThanOrEqual(w.usageMib);
    // The workload's headroom is what it had under the pinned balloon, at every moment:
    // never more (it cannot take the released pages), and never less than the reserve
    // (the moment between lowering the limit and the release must not OOM-kill it).
    expect(g.maxSlackMib).toBe(slackBefore);
    expect(g.minSlackMib).toBeGreaterThanOrEqual(handOffReserveMib(1024));
    expect(g.driver.view('vm')).toEqual({ limitMib: 512, handedOffMib: 512, reclaimedMib: 512 });
    // The sum the pool's room is computed from follows every write, and forgets a detached guest.
    expect(g.driver.limitSumMib()).toBe(512);
    await g.driver.detach('vm');
    expect(g.driver.limitSumMib()).toBe(0);
  });

  it('hands off while the balloon inflates: little is left at the settle, the inflate always has room, no write below usage, the headroom never grows', async () => {
    const g = await setUp(1536, 60);
    let handedAtSettle = -1;
    await g.inflateGradually(1024, 32, () => {
      if (g.pinnedMib + g.handedOffMib === 1024) handedAtSettle = g.handedOffMib;
    });
    // Most of the balloon was handed off before it settled (what the agent pinned after the last answer is left).
    expect(handedAtSettle).toBeGreaterThanOrEqual(512);
    await g.driver.idle();
    expect({ limit: g.limitMib, handed: g.handedOffMib, pinned: g.pinnedMib }).toEqual({ limit: 512, handed: 1024, pinned: 0 });
    expect(g.ebusy).toBe(0);
    for (const w of g.writes) expect(w.limitMib).toBeGreaterThanOrEqual(w.usageMib);
    // The balloon could always have finished its inflate within the limit, keeping the reserve.
    expect(g.minInflateRoomMib).toBeGreaterThanOrEqual(0);
    // The workload never had more headroom than with no hand-off at all.
    expect(g.maxExtraSlackMib).toBeLessThanOrEqual(0);
  });

  it('a tight guest (the target leaves no slack beyond the reserve) is not handed off while it inflates, and is after the settle', async () => {
    const g = await setUp(1024, 300);
    let handedWhileInflating = 0;
    // 1024 − 300 − 680 leaves 44 MiB: the reserve (41) and 3 MiB, too little for a batch worth its round trip.
    await g.inflateGradually(680, 20, () => {
      handedWhileInflating = Math.max(handedWhileInflating, g.handedOffMib);
    });
    expect(handedWhileInflating).toBe(0);
    await g.driver.idle();
    expect(g.handedOffMib).toBe(680);
    expect(g.limitMib).toBe(1024 - 680);
    // And with 5 MiB beyond the reserve (under a batch worth a round trip while inflating): after the settle, in batches of 5.
    const t = await setUp(1024, 260);
    await t.inflateGradually(718, 20, () => {
      handedWhileInflating = Math.max(handedWhileInflating, t.handedOffMib);
    });
    expect(handedWhileInflating).toBe(0);
    await t.driver.idle();
    expect({ handed: t.handedOffMib, limit: t.limitMib }).toEqual({ handed: 718, limit: 306 });
    for (const w of t.writes) expect(w.limitMib).toBeGreaterThanOrEqual(w.usageMib);
    for (const w of g.writes) expect(w.limitMib).toBeGreaterThanOrEqual(w.usageMib);
    expect(g.minInflateRoomMib).toBeGreaterThanOrEqual(-41);
  });

  it('a workload that grows between reading and writing meets EBUSY: the driver re-plans and still finishes', async () => {
    const g = await setUp(2048, 400);
    g.inflate(1024);
    let reads = 0;
    // Every third usage read, the workload grabs 20 MiB more (up to 520 MiB).
    g.beforeUsageRead = () => {
      if (++reads % 3 === 0 && g.workloadMib < 520) g.workloadMib += 20;
    };
    await g.driver.idle();
    expect(g.handedOffMib).toBe(1024);
    expect(g.limitMib).toBe(1024);
    for (const w of g.writes) expect(w.limitMib).toBeGreaterThanOrEqual(w.usageMib);
    expect(g.workloadMib).toBeLessThanOrEqual(520);
  });

  it('a workload at its limit that grabs every released page gets one chunk in all, and the limit never goes below usage', async () => {
    const g = await setUp(1024, 300);
    g.inflate(512);
    await g.driver.idle();
    // Now the workload fills its headroom and grabs whatever is released.
    g.workloadMib = g.limitMib - g.pinnedMib;
    g.inflate(0);
    const grown = g.workloadMib;
    g.afterRelease = () => {
      g.workloadMib += g.limitMib - g.usageMib;
    };
    // A new balloon on a full guest: its agent could only pin it by the floor's leave; model 64 MiB pinned at the limit.
    g.workloadMib -= 64;
    g.inflate(64);
    await g.driver.idle();
    expect(g.workloadMib - (grown - 64)).toBeLessThanOrEqual(1);
    for (const w of g.writes) expect(w.limitMib).toBeGreaterThanOrEqual(w.usageMib);
    expect(g.ebusy).toBe(0);
  });

  it('a deflate of handed-off MiB raises the limit with no page work; latest wins at a batch boundary', async () => {
    const g = await setUp(2048, 300, { maxBatchMib: 128 });
    g.inflate(1024);
    // After the first batch's answer, a new lower target arrives.
    let statuses = 0;
    const original = g.driver.onStatus.bind(g.driver);
    g.driver.onStatus = (name, s) => {
      original(name, s);
      if (++statuses === 3) g.deflateTo(200);
    };
    await g.driver.idle();
    // Everything past the newest target came back: the limit is memory − what is handed off.
    expect(g.handedOffMib + g.pinnedMib).toBe(200);
    expect(g.limitMib).toBe(2048 - g.handedOffMib);
    expect(g.driver.view('vm')?.reclaimedMib).toBe(g.handedOffMib);
    g.driver.onStatus = original;
    // The rest of the new balloon is handed off too.
    g.driver.onStatus('vm', g.status());
    await g.driver.idle();
    expect({ handed: g.handedOffMib, limit: g.limitMib }).toEqual({ handed: 200, limit: 1848 });
    g.deflateTo(0);
    await g.driver.idle();
    expect({ handed: g.handedOffMib, limit: g.limitMib, pinned: g.pinnedMib }).toEqual({ handed: 0, limit: 2048, pinned: 0 });
    expect(g.driver.limitSumMib()).toBe(2048);
  });

  it('an agent that stops answering (killed) leaves the limit no lower than memory − target', async () => {
    const g = await setUp(1024, 200, { answerTimeoutMs: 50 });
    g.answering = false;
    g.inflate(400);
    await g.driver.idle();
    expect(g.handedOffMib).toBe(0);
    expect(g.limitMib).toBeGreaterThanOrEqual(1024 - g.targetMib);
    expect(g.limitMib).toBeLessThan(1024);
    // It counts nothing as reclaimed: the agent never said it released.
    expect(g.driver.view('vm')?.reclaimedMib).toBe(0);
  });

  it('attach reads the limit back (a restarted host) and reconciles it with what the agent has handed off', async () => {
    const g = new FakeGuest(1024, 200);
    g.driver = new HandOffDriver({ logger });
    // The last host lowered the limit by 300 and died before the agent released more than 200.
    g.limitMib = 724;
    g.handedOffMib = 200;
    g.pinnedMib = 100;
    g.targetMib = 300;
    const reclaimed = await g.driver.attach(
      'vm',
      { cgroup: g, memoryMib: 1024, chunkMib: 1, sendHandOff: (mib) => g.sendHandOff(mib) },
      { handedOffMib: 200, generation: 1 },
    );
    expect(reclaimed).toBe(200);
    g.driver.onStatus('vm', g.status());
    await g.driver.idle();
    expect({ handed: g.handedOffMib, limit: g.limitMib }).toEqual({ handed: 300, limit: 724 });
    // And a limit left above (the host died before lowering after a release): lowered back down.
    g.limitMib = 1024;
    await g.driver.attach('vm', { cgroup: g, memoryMib: 1024, chunkMib: 1, sendHandOff: (mib) => g.sendHandOff(mib) }, { handedOffMib: 300, generation: 1 });
    g.driver.onStatus('vm', g.status());
    await g.driver.idle();
    expect(g.limitMib).toBe(724);
  });
});

describe('hand-off driver: guests under one pool cgroup', () => {
  const POOL_MIB = 1536;

  /** Guests a (1024), b (512) and c (800) whose limits fill the pool, with 300, 200 and 300 MiB handed off. */
  async function pool() {
    const guests: FakeGuest[] = [];
    const sum = { maxMib: 0, writes: 0 };
    const limitsMib = () => guests.reduce((a, g) => a + g.limitMib, 0);
    const driver: HandOffDriver = new HandOffDriver({ logger, raiseRoomMib: (): number => POOL_MIB - driver.limitSumMib() });
    const add = async (name: string, memoryMib: number, workloadMib: number, handedOffMib: number) => {
      const g = new FakeGuest(memoryMib, workloadMib);
      g.name = name;
      g.driver = driver;
      g.slowWrites = true;
      g.limitMib = memoryMib - handedOffMib;
      g.handedOffMib = handedOffMib;
      g.targetMib = handedOffMib;
      // The pool cgroup's view: the sum of its children's limits after every write the kernel took.
      g.afterWrite = () => {
        sum.writes++;
        sum.maxMib = Math.max(sum.maxMib, limitsMib());
      };
      guests.push(g);
      await driver.attach(name, { cgroup: g, memoryMib, chunkMib: 1, sendHandOff: (mib) => g.sendHandOff(mib) }, { handedOffMib, generation: 1 });
      driver.onStatus(name, g.status());
      return g;
    };
    const a = await add('a', 1024, 200, 300);
    const b = await add('b', 512, 100, 200);
    const c = await add('c', 800, 100, 300);
    await driver.idle();
    expect(limitsMib()).toBe(POOL_MIB);
    expect(driver.limitSumMib()).toBe(POOL_MIB);
    return { a, b, c, driver, sum, limitsMib };
  }

  it('two guests waiting for room that one lowered limit wakes at once never raise into the same room', async () => {
    const { a, b, c, driver, sum, limitsMib } = await pool();
    // Pressure in a and b: their agents give back 100 handed-off MiB each; no room, both wait.
    a.deflateTo(200);
    b.deflateTo(100);
    await driver.idle();
    expect({ a: a.limitMib, b: b.limitMib }).toEqual({ a: 724, b: 312 });
    // c's balloon grows by 100 and is handed off: its limit comes down by 100 and wakes a and b together.
    c.inflate(100);
    await driver.idle();
    expect(c.limitMib).toBe(400);
    // The 100 MiB went to one of them, once: the pool's children never summed above it, and the count is the kernel's.
    expect(sum.maxMib).toBeLessThanOrEqual(POOL_MIB);
    expect(limitsMib()).toBe(POOL_MIB);
    expect(a.limitMib + b.limitMib).toBe(724 + 312 + 100);
    expect(driver.limitSumMib()).toBe(limitsMib());
    // More room from c: the other one gets its limit back too.
    c.inflate(100);
    await driver.idle();
    expect({ a: a.limitMib, b: b.limitMib, c: c.limitMib }).toEqual({ a: 824, b: 412, c: 300 });
    expect(sum.maxMib).toBeLessThanOrEqual(POOL_MIB);
    expect(driver.limitSumMib()).toBe(limitsMib());
    expect(sum.writes).toBeGreaterThanOrEqual(4);
  });

  it('a raise the kernel refuses gives its room back: the count stays the kernel sum and another guest takes the room', async () => {
    const { a, b, c, driver, sum, limitsMib } = await pool();
    a.deflateTo(200);
    await driver.idle();
    a.failNextWrite = new CgroupError('io', 'EIO');
    c.inflate(100);
    await driver.idle();
    // a's raise failed: its limit and the count stay where the kernel has them.
    expect(a.limitMib).toBe(724);
    expect(driver.limitSumMib()).toBe(limitsMib());
    // b, deflating now, gets the room a could not take; a waits for the next.
    b.deflateTo(100);
    await driver.idle();
    expect(b.limitMib).toBe(412);
    expect(a.limitMib).toBe(724);
    expect(sum.maxMib).toBeLessThanOrEqual(POOL_MIB);
    expect(driver.limitSumMib()).toBe(limitsMib());
  });

  it('two attaches of one guest at once (a quick reconnect) count its limit once', async () => {
    const g = new FakeGuest(1024, 100);
    const driver = new HandOffDriver({ logger });
    g.driver = driver;
    g.limitMib = 700;
    const guest = { cgroup: g, memoryMib: 1024, chunkMib: 1, sendHandOff: (mib: number) => g.sendHandOff(mib) };
    await Promise.all([driver.attach('vm', guest, { handedOffMib: 0, generation: 1 }), driver.attach('vm', guest, { handedOffMib: 0, generation: 1 })]);
    expect(driver.limitSumMib()).toBe(700);
    await driver.detach('vm');
    expect(driver.limitSumMib()).toBe(0);
  });

  it('a limit not in whole MiB counts rounded up in the sum, so a raise never takes the fraction twice', async () => {
    const g = new FakeGuest(1024, 100);
    const driver: HandOffDriver = new HandOffDriver({ logger, raiseRoomMib: (): number => 2048 - driver.limitSumMib() });
    g.driver = driver;
    // An adopted cgroup's limit of 700.5 MiB: the planner sees 700, the pool counts 701.
    g.limitMib = 700.5;
    await driver.attach('vm', { cgroup: g, memoryMib: 1024, chunkMib: 1, sendHandOff: (mib) => g.sendHandOff(mib) }, { handedOffMib: 0, generation: 1 });
    expect(driver.limitSumMib()).toBe(701);
    expect(driver.view('vm')?.limitMib).toBe(700);
  });
});

describe('hand-off while inflating, by default', () => {
  it('overlaps the inflate only where a core is free beyond the agent and its two workers', () => {
    expect([1, 2, 3, 4, 8].map(handOffWhileInflatingByDefault)).toEqual([false, true, true, true, true]);
  });
});
