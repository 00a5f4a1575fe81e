// The policy loop without sockets or timers: a real HostService with recording
// links, guest stats and statuses fed by hand, one round at a time; what the
// loop sends through setBalloon is what is checked.
import type pino from 'pino';
import type { BalloonStatus } from '@memballoon/protocol';
import { describe, expect, it, vi } from 'vitest';
import { HostError } from '../errors.js';
import { createPolicyEngine } from '../policy/engine.js';
import type { HostService, GuestLink } from './host-service.js';
import { testHello, testLogger, testService, testStats } from './test-fixtures.js';
import { policyInput, runPolicyRound, type PolicyLoopService } from './policy-loop.js';

const logger = testLogger;
const MIB = 1024 * 1024;

function service(poolSizeMib: number) {
  return testService({ poolSizeMib, reclaimTimeoutMs: 200 });
}

type TestLink = GuestLink & { targets: number[] };
function link(): TestLink {
  const targets: number[] = [];
  return { targets, open: true, sendTarget: (t: number) => void targets.push(t), end: () => {} };
}

const hello = testHello;

const stats = testStats;

/** A running guest that the test drives: start, report stats, pin what it was asked. */
async function guest(s: HostService, name: string, memoryMib: number, settings: Record<string, unknown> = {}) {
  const { token } = s.createVm({ name, memoryMib });
  s.modifyVm(name, { balloonPolicy: 'auto', ...settings });
  const l = link();
  const r = await s.openSession(hello(name, memoryMib, token), l, logger);
  if (!r.ok) throw new Error(`refused: ${r.message}`);
  const report = (actualMib: number, state: BalloonStatus['state'] = 'steady', reason: BalloonStatus['reason'] = 'none') => {
    const v = s.vmView(name);
    s.onStatus(name, r.sessionId, {
      generation: v.balloon!.generation,
      targetMib: v.balloon!.targetMib,
      actualMib,
      lockedMib: actualMib,
      state,
      reason,
      lock: 'locked',
      detail: '',
    });
  };
  return {
    link: l,
    stats: (availableMib: number) => s.onStats(name, r.sessionId, stats(memoryMib, availableMib)),
    /** The guest pins (or frees) exactly what its newest target asks. */
    follow: () => report(s.vmView(name).balloon!.targetMib),
    report,
  };
}

/** Records setBalloon calls on their way to the real service. */
function spied(s: HostService): { svc: PolicyLoopService; calls: Array<[string, number]> } {
  const calls: Array<[string, number]> = [];
  return {
    calls,
    svc: {
      snapshot: () => s.snapshot(),
      setBalloon: (name, targetMib, source, opts) => {
        calls.push([name, targetMib as number]);
        expect([source, opts]).toEqual(['policy', { reclaim: false }]);
        return s.setBalloon(name, targetMib, source, opts);
      },
    },
  };
}

describe('policy loop', () => {
  it("reads the registry's balloon max 0 as the 90 % rule (not as 'never inflate'), and a set max literally", async () => {
    const s = service(1024);
    const free = await guest(s, 'free', 512);
    const capped = await guest(s, 'capped', 256, { balloonMaxMib: 10 });
    free.stats(400);
    capped.stats(200);
    expect(policyInput(s, 0).vms.map((v) => [v.name, v.settings.balloonMaxMib])).toEqual([
      ['free', 460],
      ['capped', 10],
    ]);
    // Free quota 256 below a 600 MiB margin: refill it from both guests' surplus.
    const engine = createPolicyEngine({ safetyMarginMib: 600 });
    const { svc, calls } = spied(s);
    await runPolicyRound(svc, engine, logger, 0);
    expect(calls).toEqual([
      ['free', 25],
      ['capped', 10],
    ]);
    expect(free.link.targets.at(-1)).toBe(25);
    expect(capped.link.targets.at(-1)).toBe(10);
    // The capped guest stays at its max however short the margin is.
    free.follow();
    capped.follow();
    await runPolicyRound(svc, engine, logger, 1000);
    expect(calls.slice(2)).toEqual([['free', 50]]);
  });

  it('deflates a guest under pressure through setBalloon, funded by the free quota; manual guests are not touched', async () => {
    const s = service(1600);
    const busy = await guest(s, 'busy', 512);
    await s.setBalloon('busy', 200);
    busy.follow();
    const manual = await guest(s, 'manual', 512, { balloonPolicy: 'manual' });
    manual.stats(450);
    busy.stats(10); // critical: below 5 % of its memory
    const engine = createPolicyEngine({ safetyMarginMib: 256 });
    const { svc, calls } = spied(s);
    await runPolicyRound(svc, engine, logger, 0);
    // Need: mid-band (22.5 % of 512) − 10 = 105 MiB, one deflate step (10 %) at most.
    expect(calls).toEqual([['busy', 149]]);
    expect(busy.link.targets.at(-1)).toBe(149);
    expect(s.vmView('busy').heldMib).toBe(512 - 149);
    expect(manual.link.targets).toEqual([]);
  });

  it('pays back a pool overcommitted by a guest that deflated on its own, by inflating the other auto guests within their limits', async () => {
    const s = service(900);
    const a = await guest(s, 'a', 512);
    await s.setBalloon('a', 300);
    a.follow();
    const b = await guest(s, 'b', 512, { balloonMaxMib: 100 });
    expect(s.hostView().pool).toMatchObject({ heldMib: 212 + 512, freeMib: 176 });
    // a runs short of memory and gives its whole balloon back by itself.
    a.report(0, 'short', 'guest_pressure');
    expect(s.pool.overcommitMib).toBe(124);
    expect(policyInput(s, 0)).toMatchObject({ poolFreeMib: -124, vms: [{ name: 'a', targetMib: 0, actualMib: 0 }, { name: 'b' }] });
    a.stats(200);
    b.stats(400);
    const engine = createPolicyEngine({ safetyMarginMib: 0 });
    const { svc, calls } = spied(s);
    for (let round = 0; round < 20 && s.pool.overcommitMib > 0; round++) {
      await runPolicyRound(svc, engine, logger, round * 1000);
      a.follow();
      b.follow();
    }
    // Both give (a is not under pressure by its stats, and its stopped
    // balloon no longer counts as memory on its way to 300 MiB), b within its
    // balloon max, each one inflate step (5 %) a round, and no more than owed.
    expect(s.pool.overcommitMib).toBe(0);
    expect(s.hostView().pool.freeMib).toBeLessThan(25);
    expect(calls.length).toBeGreaterThan(0);
    const byVm = (vm: string) => calls.filter(([name]) => name === vm).map(([, t]) => t);
    for (const vm of ['a', 'b']) {
      const targets = byVm(vm);
      expect(targets.length).toBeGreaterThan(0);
      targets.forEach((t, i) => expect(t - (targets[i - 1] ?? 0)).toBeGreaterThan(0));
      targets.forEach((t, i) => expect(t - (targets[i - 1] ?? 0)).toBeLessThanOrEqual(25));
    }
    expect(Math.max(...byVm('b'))).toBeLessThanOrEqual(100);
  });

  it("waits behind a start that is reclaiming, instead of undoing the start's reclaim", async () => {
    const s = service(768);
    const a = await guest(s, 'a', 512);
    const { token } = s.createVm({ name: 'b', memoryMib: 512 });
    const admission = s.openSession(hello('b', 512, token), link(), logger);
    await new Promise((resolve) => setImmediate(resolve));
    expect(a.link.targets.at(-1)).toBe(256);
    // Costs nothing (below the target, above the actual), yet must not jump the queue.
    let settled = false;
    const policy = s.setBalloon('a', 100, 'policy', { reclaim: false }).finally(() => (settled = true));
    policy.catch(() => {});
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    expect(a.link.targets.at(-1)).toBe(256);
    a.follow();
    expect(await admission).toMatchObject({ ok: true });
    // Its turn: now the deflate would cost what b was just given, and is refused.
    await expect(policy).rejects.toMatchObject({ code: 'pool_exhausted' });
    expect(a.link.targets.at(-1)).toBe(256);
  });

  it('logs a refused change and goes on with the others; never rejects', async () => {
    const s = service(1024);
    const x = await guest(s, 'x', 512);
    const y = await guest(s, 'y', 512);
    x.stats(400);
    y.stats(400);
    const setBalloon = vi.fn(async (name: string) => {
      if (name === 'x') throw new HostError('pool_exhausted', 'no');
      return s.vmView(name);
    });
    const warn = vi.fn();
    const log = { info: vi.fn(), warn } as unknown as pino.Logger;
    await runPolicyRound({ snapshot: () => s.snapshot(), setBalloon }, createPolicyEngine({ safetyMarginMib: 512 }), log, 0);
    expect(setBalloon.mock.calls.map((c) => c[0]).sort()).toEqual(['x', 'y']);
    expect(warn).toHaveBeenCalledWith(expect.objectContaining({ vm: 'x', err: 'no' }), 'policy change not applied');
  });

  it('skips the snapshot of every VM while no running guest is in auto mode', async () => {
    const s = service(1024);
    await guest(s, 'by-hand', 256, { balloonPolicy: 'manual' });
    const snapshot = vi.fn(() => s.snapshot());
    const svc: PolicyLoopService = { snapshot, setBalloon: vi.fn(), autoPolicyRunning: () => s.autoPolicyRunning() };
    await runPolicyRound(svc, createPolicyEngine(), logger, 0);
    expect(snapshot).not.toHaveBeenCalled();
    await guest(s, 'automatic', 256, { balloonPolicy: 'auto' });
    await runPolicyRound(svc, createPolicyEngine(), logger, 0);
    expect(snapshot).toHaveBeenCalledTimes(1);
  });

  it('does nothing without running auto guests', async () => {
    const s = service(1024);
    const setBalloon = vi.fn();
    await runPolicyRound({ snapshot: () => s.snapshot(), setBalloon }, createPolicyEngine(), logger, 0);
    expect(setBalloon).not.toHaveBeenCalled();
  });
});
