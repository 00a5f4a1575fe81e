// The hand-off inside the host service, without sockets or a kernel: each
// managed guest is a fake cgroup (usage = workload + pinned balloon, EBUSY
// below usage) and a fake agent answering targets and hand-offs as the real
// one does. What is checked is the service's contract: the pool counts a
// managed guest's memory as reclaimed only once its limit holds it, so the
// sum of the guests' limits stays within the pool.
import { describe, expect, it } from 'vitest';
import type { BalloonStatus } from '@memballoon/protocol';
import type { HostService } from '../service/host-service.js';
import { testHello, testService } from '../service/test-fixtures.js';
import { formatHost, formatVm } from '../cli/format.js';
import { HostMetrics } from '../metrics/prometheus.js';
import { CgroupError } from '../cgroup/errors.js';
import type { HandOffCgroup } from './driver.js';
import type { GuestsCollaborator } from '../guests/views.js';

const MIB = 1024 * 1024;

class SimGuest implements HandOffCgroup {
  readonly dir: string;
  limitMib: number;
  pinnedMib = 0;
  handedOffMib = 0;
  targetMib = 0;
  generation = 0;
  open = true;
  sessionId = '';
  constructor(
    readonly name: string,
    readonly memoryMib: number,
    public workloadMib: number,
    private readonly world: World,
  ) {
    this.dir = `/fake/memballoon/${name}`;
    this.limitMib = memoryMib;
  }
  async usageBytes() {
    return (this.workloadMib + this.pinnedMib) * MIB;
  }
  async limitBytes() {
    return this.limitMib * MIB;
  }
  /** While set, a limit write completes only once it resolves (a busy kernel's write, answered turns later). */
  writeGate: Promise<void> | null = null;
  /** Limit writes begun and not yet completed. */
  writesInFlight = 0;
  async setLimitBytes(bytes: number | null) {
    const mib = bytes === null ? this.memoryMib : bytes / MIB;
    if (this.writeGate) {
      this.writesInFlight++;
      await this.writeGate;
      this.writesInFlight--;
    }
    if (mib < this.workloadMib + this.pinnedMib) throw new CgroupError('limit_below_usage', 'EBUSY');
    this.limitMib = mib;
    this.world.sample();
  }
  private status(): BalloonStatus {
    return {
      generation: this.generation,
      targetMib: this.targetMib,
      actualMib: this.pinnedMib + this.handedOffMib,
      lockedMib: this.pinnedMib,
      handedOffMib: this.handedOffMib,
      state: 'steady',
      reason: 'none',
      lock: 'locked',
      detail: '',
    };
  }
  private report() {
    setImmediate(() => this.world.s.onStatus(this.name, this.sessionId, this.status()));
  }
  sendTarget(targetMib: number, generation: number) {
    this.targetMib = targetMib;
    this.generation = generation;
    let actual = this.pinnedMib + this.handedOffMib;
    if (targetMib < actual) {
      const fromHanded = Math.min(this.handedOffMib, actual - targetMib);
      this.handedOffMib -= fromHanded;
      actual -= fromHanded;
      this.pinnedMib -= Math.max(0, actual - targetMib);
    } else {
      // The agent's floor: it pins only what fits under its limit.
      this.pinnedMib += Math.max(0, Math.min(targetMib - actual, this.limitMib - this.workloadMib - this.pinnedMib - 16));
    }
    this.report();
  }
  /** The agent deflates by itself (pressure): handed-off MiB first, no page work. */
  selfDeflate(mib: number) {
    const fromHanded = Math.min(this.handedOffMib, mib);
    this.handedOffMib -= fromHanded;
    this.pinnedMib -= Math.min(this.pinnedMib, mib - fromHanded);
    this.report();
  }
  sendHandOff(handedOffMib: number) {
    const move = Math.max(0, Math.min(handedOffMib - this.handedOffMib, this.pinnedMib));
    this.pinnedMib -= move;
    this.handedOffMib += move;
    this.report();
  }
  end() {
    this.open = false;
  }
}

class World {
  readonly guests = new Map<string, SimGuest>();
  maxLimitSumMib = 0;
  s!: HostService;
  constructor(readonly poolMib: number) {}
  sample() {
    const sum = [...this.guests.values()].filter((g) => this.s.isRunning(g.name)).reduce((a, g) => a + g.limitMib, 0);
    this.maxLimitSumMib = Math.max(this.maxLimitSumMib, sum);
  }
  /** `limitMib`: the cgroup's limit before the session (an adopted cgroup's own); the VM's memory by default, as startvm sets it. */
  async start(name: string, memoryMib: number, workloadMib: number, limitMib = memoryMib) {
    const g = new SimGuest(name, memoryMib, workloadMib, this);
    g.limitMib = limitMib;
    this.guests.set(name, g);
    this.s.createVm({ name, memoryMib });
    // biome-ignore lint/complexity/useLiteralKeys: the service's private logger, reached on purpose by this test
    const r = await this.s.openSession(testHello(name, memoryMib), g, this.s['log']);
    if (!r.ok) throw new Error(r.message);
    g.sessionId = r.sessionId;
    g.sendTarget(r.welcome.targetMib, r.welcome.generation);
    this.sample();
    return g;
  }
}

/** What startvm holds: the VMs it is starting, and those whose cgroup it keeps. */
interface Launched {
  starting: Set<string>;
  cgroups: Set<string>;
}

function world(poolMib: number, launched?: Launched) {
  const w = new World(poolMib);
  // Only what startvm is starting, and whose cgroup it keeps, matters of the launcher here.
  const guests = launched
    ? ({
        isStarting: (name: string) => launched.starting.has(name),
        holdsLimit: (name: string) => launched.cgroups.has(name),
        vmView: () => undefined,
        acceptsCredential: () => false,
        sessionEnded: () => {},
      } as unknown as GuestsCollaborator)
    : undefined;
  w.s = testService({
    poolSizeMib: poolMib,
    guestAuth: false,
    reclaimTimeoutMs: 5000,
    cgroupOf: (name) => w.guests.get(name) ?? null,
    ...(guests ? { guests } : {}),
  });
  return w;
}

async function settle(w: World, until: () => boolean) {
  for (let i = 0; i < 1000 && !until(); i++) {
    await new Promise((r) => setImmediate(r));
    await w.s.handOffsIdle();
  }
  expect(until()).toBe(true);
}

describe('hand-off in the host service', () => {
  it('a balloon is handed off: the limit comes down, the pool counts it once the limit holds it, and views show both parts', async () => {
    const w = world(2048);
    const a = await w.start('a', 1024, 300);
    expect(w.s.hostView().reclaim).toBe('physical');
    await w.s.setBalloon('a', 400);
    await settle(w, () => a.handedOffMib === 400);
    expect(a.limitMib).toBe(624);
    expect(w.s.pool.reclaimedMib).toBe(400);
    expect(w.s.vmView('a').balloon).toMatchObject({ targetMib: 400, actualMib: 400, handedOffMib: 400, lockedMib: 0 });
    expect(w.s.vmView('a').heldMib).toBe(624);
    expect(formatVm(w.s.vmView('a'))).toMatch(/Balloon actual: +400 MiB \(handed off 400 MiB\)/);
    expect(formatHost(w.s.hostView())).toMatch(/Reclaim: +physical/);
    const text = await new HostMetrics(() => w.s.snapshot()).render();
    expect(text).toMatch(/^memballoon_vm_balloon_handed_off_bytes\{vm="a"\} 419430400$/m);
    expect(text).toMatch(/^memballoon_reclaim_physical 1$/m);
    // Deflate: the limit goes back up by what comes back, with no page work.
    await w.s.setBalloon('a', 100);
    await settle(w, () => a.limitMib === 924);
    expect({ handed: a.handedOffMib, pinned: a.pinnedMib }).toEqual({ handed: 100, pinned: 0 });
    expect(w.s.vmView('a').balloon).toMatchObject({ actualMib: 100, handedOffMib: 100 });
    expect(w.s.pool.heldMib).toBe(924);
  });

  it('admission by reclaim waits for the hand-off: the sum of the limits never exceeds the pool', async () => {
    const w = world(1536);
    const a = await w.start('a', 1024, 200);
    const b = await w.start('b', 512, 100);
    expect(w.s.pool.freeMib).toBe(0);
    // c needs 768: reclaimed from a and b, handed off before c is let in.
    const c = await w.start('c', 768, 100);
    expect(w.s.isRunning('c')).toBe(true);
    expect(a.handedOffMib + b.handedOffMib).toBeGreaterThanOrEqual(768);
    expect(a.limitMib + b.limitMib + c.limitMib).toBeLessThanOrEqual(1536);
    expect(w.maxLimitSumMib).toBeLessThanOrEqual(1536);
  });

  it('a guest that deflates on its own gets its limit back only as the others make room under the pool', async () => {
    const w = world(1536);
    const a = await w.start('a', 1024, 200);
    const b = await w.start('b', 512, 100);
    await w.s.setBalloon('a', 300);
    await settle(w, () => a.handedOffMib === 300);
    await w.start('c', 300, 50);
    expect(a.limitMib + b.limitMib + w.guests.get('c')!.limitMib).toBe(1536);
    // Pressure in a: its agent gives back 100 handed-off MiB by itself.
    a.selfDeflate(100);
    await settle(w, () => a.handedOffMib === 200 && a.limitMib + b.limitMib + w.guests.get('c')!.limitMib <= 1536);
    await w.s.handOffsIdle();
    // No room at first: a's limit waits.
    const c = w.guests.get('c')!;
    // The pool pays the overcommit back from b and c (their hand-offs lower their limits), and a's limit rises by what that frees, not more.
    await settle(w, () => b.handedOffMib + c.handedOffMib > 0 && a.limitMib === 1536 - b.limitMib - c.limitMib);
    expect(a.limitMib).toBeGreaterThan(724);
    expect(a.limitMib).toBeLessThanOrEqual(824);
    expect(w.maxLimitSumMib).toBeLessThanOrEqual(1536);
  });

  it('a VM being started (its cgroup limited before its Hello) keeps its memory under the pool: a raise waits, and goes on when the start ends', async () => {
    const starting = new Set<string>();
    const w = world(1536, { starting, cgroups: new Set() });
    const a = await w.start('a', 1024, 200);
    await w.s.setBalloon('a', 300);
    await settle(w, () => a.handedOffMib === 300);
    await w.start('b', 512, 100);
    expect(a.limitMib).toBe(724);
    // startvm of c (300 MiB) has begun: its cgroup may hold up to 300 MiB already, the last 300 of the pool.
    w.s.createVm({ name: 'c', memoryMib: 300 });
    starting.add('c');
    // Pressure in a: its agent gives back 100 handed-off MiB; the only room is c's.
    a.selfDeflate(100);
    await settle(w, () => w.s.vmView('a').balloon?.handedOffMib === 200);
    await w.s.handOffsIdle();
    expect(a.limitMib).toBe(724);
    // The start failed: its room is free again, and a's limit comes back without any other limit moving.
    starting.delete('c');
    w.s.startEnded('c');
    await settle(w, () => a.limitMib === 824);
    expect(w.maxLimitSumMib).toBeLessThanOrEqual(1536);
  });

  it('a startvm guest whose session ended keeps its memory under the pool while its cgroup stays: a raise waits until it is gone', async () => {
    const cgroups = new Set<string>();
    const w = world(1536, { starting: new Set(), cgroups });
    const a = await w.start('a', 1024, 200);
    await w.s.setBalloon('a', 300);
    await settle(w, () => a.handedOffMib === 300);
    await w.start('b', 512, 100);
    cgroups.add('c');
    const c = await w.start('c', 300, 50);
    expect(a.limitMib + w.guests.get('b')!.limitMib + c.limitMib).toBe(1536);
    // c's session ends (an agent being stopped, or one that may reconnect): its cgroup and limit stay for now.
    w.s.closeSession('c', c.sessionId, 'test');
    a.selfDeflate(100);
    await settle(w, () => w.s.vmView('a').balloon?.handedOffMib === 200);
    await w.s.handOffsIdle();
    expect(a.limitMib).toBe(724);
    // The launcher removed c's cgroup: a's limit comes back.
    cgroups.delete('c');
    w.s.guestGone('c');
    await settle(w, () => a.limitMib === 824);
  });

  it("an adopted cgroup is counted at its VM's memory from its attach (its own higher limit comes down), and after its session ends until its own limit is back", async () => {
    // The launcher's holdsLimit: adopted cgroups whose own limit is not back yet.
    const held = new Set<string>();
    const w = world(1536, { starting: new Set(), cgroups: held });
    const a = await w.start('a', 1024, 200);
    await w.s.setBalloon('a', 300);
    await settle(w, () => a.handedOffMib === 300);
    await w.start('b', 512, 100);
    // d's cgroup comes with its admin's limit of 900 MiB; the VM holds 300 of the pool, the last 300.
    const d = await w.start('d', 300, 50, 900);
    await w.s.handOffsIdle();
    expect(d.limitMib).toBe(300);
    expect(a.limitMib + w.guests.get('b')!.limitMib + d.limitMib).toBe(1536);
    // d's session ends: the hand-off's limit stays on its cgroup until the launcher gives its own back.
    held.add('d');
    w.s.closeSession('d', d.sessionId, 'test');
    a.selfDeflate(100);
    await settle(w, () => w.s.vmView('a').balloon?.handedOffMib === 200);
    await w.s.handOffsIdle();
    expect(a.limitMib).toBe(724);
    // Its own limit is back (the admin's, outside the pool): a's limit comes back.
    d.limitMib = 900;
    held.delete('d');
    w.s.guestGone('d');
    await settle(w, () => a.limitMib === 824);
  });

  it("a startvm that begins while a raise is being written sees that room taken: its starting limit is the counted figure, not the kernel's", async () => {
    const w = world(1536, { starting: new Set(), cgroups: new Set() });
    const a = await w.start('a', 1024, 200);
    await w.s.setBalloon('a', 300);
    await settle(w, () => a.handedOffMib === 300);
    const b = await w.start('b', 512, 100);
    w.s.createVm({ name: 'c', memoryMib: 512 });
    // Pressure in a: its agent gives back 100 handed-off MiB; the raise to 824 is counted, and its write hangs.
    let complete!: () => void;
    a.writeGate = new Promise<void>((r) => (complete = r));
    a.selfDeflate(100);
    // Not settle(): the hand-off is not idle while the write hangs.
    for (let i = 0; i < 1000 && a.writesInFlight === 0; i++) await new Promise((r) => setImmediate(r));
    expect(a.writesInFlight).toBe(1);
    // The kernel still says 724 + 512: 300 MiB free under the pool. The counted figure says 200.
    expect(a.limitMib + b.limitMib).toBe(1236);
    expect(w.s.startLimitRoomMib('c')).toBe(200);
    a.writeGate = null;
    complete();
    await settle(w, () => a.limitMib === 824);
    expect(w.s.startLimitRoomMib('c')).toBe(200);
  });

  it('without cgroups the pool is a budget and nothing is handed off', async () => {
    const s = testService({ poolSizeMib: 1024, guestAuth: false });
    expect(s.hostView().reclaim).toBe('budget');
  });
});
