// The reclaim under interleavings (issue 12.1-12.3), without sockets: a fake
// clock and scripted guests that answer targets the way real agents do, or
// deflate on their own at the worst moment.
import { bodies, type BalloonStatus } from '@memballoon/protocol';
import { describe, expect, it } from 'vitest';
import type { AdmissionResult, GuestLink } from './host-service.js';
import { FakeClock, testHello, testLogger, testService, testStats } from './test-fixtures.js';

const TIMEOUT_MS = 20_000;

/** A guest the test drives: it records targets and answers them through `onTarget`. */
interface ScriptedGuest {
  readonly name: string;
  sessionId: string;
  readonly link: GuestLink & { open: boolean; targets: number[] };
  /** Called (after the send returns) with each new target and its generation. */
  onTarget: (targetMib: number, generation: number) => void;
  /** Reports a balloon status for the newest generation. */
  report(actualMib: number, state?: BalloonStatus['state'], reason?: BalloonStatus['reason']): void;
  /** Reports statistics: `availableMib` available in the guest. */
  stats(availableMib: number): void;
}

/** Lets queued microtasks and immediates run (no time passes: the clock is fake). */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

function setup(poolSizeMib: number) {
  const clock = new FakeClock();
  const s = testService({ poolSizeMib, clock, reclaimTimeoutMs: TIMEOUT_MS, guestAuth: false });
  // After every change of state: the largest the pool ever held.
  let peakHeldMib = 0;
  s.subscribe(() => {
    peakHeldMib = Math.max(peakHeldMib, s.pool.heldMib);
  });
  const guests = new Map<string, ScriptedGuest>();

  function guest(name: string, memoryMib: number): ScriptedGuest {
    const g: ScriptedGuest = {
      name,
      sessionId: '',
      link: {
        open: true,
        targets: [],
        sendTarget(targetMib: number, gen: number) {
          g.link.targets.push(targetMib);
          queueMicrotask(() => g.onTarget(targetMib, gen));
        },
        end() {
          g.link.open = false;
        },
      },
      onTarget: () => {},
      report(actualMib, state = 'steady', reason = 'none') {
        // Like an agent: a status for the newest target it was sent.
        const targetMib = s.pool.get(name)?.targetMib ?? 0;
        const generation = s.vmView(name).balloon?.generation ?? 0;
        s.onStatus(name, g.sessionId, bodies.balloonStatus({ generation, targetMib, actualMib, lockedMib: actualMib, state, reason }).value as BalloonStatus);
      },
      stats(availableMib) {
        s.onStats(name, g.sessionId, testStats(memoryMib, availableMib));
      },
    };
    guests.set(name, g);
    return g;
  }

  /** Registers and starts a guest already holding `balloonMib` (pinned); it pins every target it gets unless told otherwise. */
  async function start(name: string, memoryMib: number, balloonMib = 0): Promise<ScriptedGuest> {
    s.createVm({ name, memoryMib });
    const g = guest(name, memoryMib);
    g.onTarget = (t) => g.report(t);
    const hello = testHello(name, memoryMib);
    if (balloonMib > 0) hello.balloon = { actualMib: balloonMib, lockedMib: balloonMib, generation: 1, targetMib: balloonMib };
    const r = await s.openSession(hello, g.link, testLogger);
    if (!r.ok) throw new Error(`${name} refused: ${r.message}`);
    g.sessionId = r.sessionId;
    return g;
  }

  /** Begins a guest's start without waiting for it (it may need a reclaim). */
  function begin(name: string, memoryMib: number): { guest: ScriptedGuest; result: Promise<AdmissionResult> } {
    s.createVm({ name, memoryMib });
    const g = guest(name, memoryMib);
    const result = s.openSession(testHello(name, memoryMib), g.link, testLogger).then((r) => {
      if (r.ok) g.sessionId = r.sessionId;
      return r;
    });
    return { guest: g, result };
  }

  return { s, clock, start, begin, guests, peakHeldMib: () => peakHeldMib };
}

const refusal = (r: AdmissionResult) => (r.ok ? undefined : { code: r.code, message: r.message });

describe('the reclaim', () => {
  it('always completes its rollback, even when a guest deflating on its own took the memory it needs (12.1)', async () => {
    const { s, clock, start, begin } = setup(900);
    const a = await start('a', 600);
    const b = await start('b', 400, 100);
    expect(s.pool.freeMib).toBe(0);
    // b answers its reclaim target by deflating on its own (pressure), so the
    // 203 MiB a pins are partly eaten by b's 100.
    b.onTarget = () => b.report(0, 'deflating', 'guest_pressure');
    const c = begin('c', 300);
    await settle();
    expect(a.link.targets).toEqual([203]);
    expect(b.link.targets).toEqual([197]);
    expect(s.pool.freeMib).toBe(103);
    clock.advance(TIMEOUT_MS);
    const r = await c.result;
    expect(refusal(r)?.code).toBe('pool_exhausted');
    expect(refusal(r)?.message).toMatch(
      /after 20 s, 197 MiB still missing: every VM asked reached its target; meanwhile VM 'b' took back 100 MiB on its own; the reclaim was undone/,
    );
    // a's balloon is put back: the rollback went through although the pool
    // had only 103 of the 203 MiB it costs.
    expect(a.link.targets.slice(0, 2)).toEqual([203, 0]);
    expect(b.link.targets).toEqual([197, 100]);
    // And the 100 MiB b took back are paid back by a at once (a still holds its balloon).
    await settle();
    expect(a.link.targets).toEqual([203, 0, 100]);
    expect(s.pool.heldMib).toBeLessThanOrEqual(900);
  });

  it('computes what can be reclaimed from the floors before touching any balloon, and says the true figure (12.3)', async () => {
    const { s, start, begin } = setup(1124);
    const a = await start('a', 1024);
    // a's guest has 300 MiB available; its floor is 64 MiB, the margin 21: a
    // balloon of at most 215 MiB.
    a.stats(300);
    expect(s.pool.reclaimCapMib('a')).toBe(215);
    const c = begin('c', 400);
    const r = await c.result;
    // Refused at once (the fake clock never moved), and a was never asked.
    expect(refusal(r)).toEqual({
      code: 'pool_exhausted',
      message:
        "starting VM 'c': 400 MiB are needed but only 100 MiB of the 1124 MiB pool are free and 215 MiB more can be reclaimed from running VMs (within their minimums and above their guests' floors): 85 MiB short; running: 'a' holds 1024 MiB (balloon 0 MiB reclaimed, 215 MiB more reclaimable)",
    });
    expect(a.link.targets).toEqual([]);
    // What fits is reclaimed, within the ceiling.
    const d = begin('d', 300);
    expect((await d.result).ok).toBe(true);
    expect(a.link.targets).toEqual([200]);
  });

  it('pays back, whatever the policy, what a guest takes back on its own (12.2)', async () => {
    const { s, start } = setup(1000);
    const a = await start('a', 500);
    const b = await start('b', 600, 100);
    expect(s.vmView('a').balloonPolicy).toBe('manual');
    expect(s.pool.freeMib).toBe(0);
    b.report(90, 'deflating', 'guest_pressure');
    expect(s.pool.overcommitMib).toBe(10);
    await settle();
    // b is left alone (it is under pressure); a pins the 10 MiB.
    expect(a.link.targets).toEqual([10]);
    expect(b.link.targets).toEqual([]);
    expect(s.pool.overcommitMib).toBe(0);
    expect(s.pool.heldMib).toBe(1000);
  });

  it('never sets a reclaim target into the margin above a guest floor, so no guest is pushed into deflating on its own (12.2)', async () => {
    const { s, start, begin, peakHeldMib } = setup(5 * 768);
    const running: Array<Awaited<ReturnType<typeof start>>> = [];
    for (const n of ['a', 'b', 'c', 'd', 'e']) {
      const g = await start(n, 768);
      // Each guest's workload uses 500 MiB: 268 available, floor 64, margin 16: a ceiling of 188.
      g.stats(268);
      // Like an agent: it pins up to its floor, and deflates on its own below it.
      g.onTarget = (t) => (t <= 188 + 16 ? g.report(t) : g.report(188 + 16, 'short', 'guest_floor'));
      running.push(g);
    }
    expect(s.pool.reclaimCapMib('a')).toBe(188);
    const f = begin('f', 768);
    const r = await f.result;
    // 5 x 188 = 940 MiB could be reclaimed; 768 are needed: admitted, and no
    // guest was asked for more than its ceiling.
    expect(r.ok).toBe(true);
    for (const g of running) expect(Math.max(...g.link.targets)).toBeLessThanOrEqual(188);
    expect(peakHeldMib()).toBeLessThanOrEqual(5 * 768);
    // A seventh is refused at once: 940 - 768 = 172 MiB are left, not 768.
    const before = running.map((g) => g.link.targets.length);
    f.guest.stats(268);
    const h = begin('h', 768);
    expect(refusal(await h.result)?.message).toMatch(/and 360 MiB more can be reclaimed from running VMs .*: 408 MiB short/);
    expect(running.map((g) => g.link.targets.length)).toEqual(before);
  });

  it('learns a ceiling only from statistics taken while the balloon rests, when they and its actual describe one moment', async () => {
    const { s, start } = setup(2 * 768);
    const a = await start('a', 768);
    // 268 available, floor 64, margin 16: a ceiling of 188.
    a.stats(268);
    expect(s.pool.reclaimCapMib('a')).toBe(188);
    // Mid-step: the statistics already count 100 MiB of pinned chunks as
    // used, the last status only 40. Taken together they would say 128.
    a.onTarget = () => a.report(40, 'inflating');
    await s.setBalloon('a', 100);
    await settle();
    a.stats(168);
    expect(s.pool.reclaimCapMib('a')).toBe(188);
    // At rest the same figures agree: still 188.
    a.report(100, 'steady');
    a.stats(168);
    expect(s.pool.reclaimCapMib('a')).toBe(188);
    // And a workload that really grew lowers it (at rest).
    a.stats(100);
    expect(s.pool.reclaimCapMib('a')).toBe(120);
  });

  it('plans again when the guests asked have pinned their targets but others took memory back meanwhile', async () => {
    const { s, start, begin } = setup(1000);
    const a = await start('a', 500);
    const b = await start('b', 600, 100);
    // b has no room left (its ceiling is its balloon), and deflates on its own when a is asked.
    b.stats(64 + 12);
    expect(s.pool.reclaimCapMib('b')).toBe(100);
    a.onTarget = (t) => {
      if (a.link.targets.length === 1) b.report(50, 'deflating', 'guest_pressure');
      a.report(t);
    };
    const c = begin('c', 200);
    expect((await c.result).ok).toBe(true);
    expect(a.link.targets).toEqual([200, 250]);
    expect(s.pool.heldMib).toBeLessThanOrEqual(1000);
  });

  it('names the real shortfall: the guest that did not pin, by how much', async () => {
    const { clock, start, begin } = setup(1000);
    const a = await start('a', 500);
    const b = await start('b', 500);
    a.onTarget = (t) => a.report(t);
    b.onTarget = (t) => b.report(Math.floor(t / 2), 'inflating');
    const c = begin('c', 400);
    await settle();
    clock.advance(TIMEOUT_MS);
    const r = refusal(await c.result);
    expect(r?.message).toMatch(/after 20 s, 100 MiB still missing: VM 'b' pinned 100 of 200 MiB; the reclaim was undone$/);
    expect(r?.message).not.toMatch(/VM 'a'/);
    expect(a.link.targets).toEqual([200, 0]);
    expect(b.link.targets).toEqual([200, 0]);
  });

  it('refuses a deflate it cannot fund without sending anything, and funds one within the ceilings', async () => {
    const { s, start } = setup(700);
    const a = await start('a', 500, 400);
    const b = await start('b', 600);
    // b can give 50 MiB above its floor (64) and margin (12).
    b.stats(64 + 12 + 50);
    await expect(s.setBalloon('a', 0)).rejects.toThrow(/deflating VM 'a' to 0 MiB: 400 MiB are needed .* and 50 MiB more can be reclaimed .*: 350 MiB short/);
    expect(a.link.targets).toEqual([]);
    expect(b.link.targets).toEqual([]);
    await s.setBalloon('a', 350);
    expect(b.link.targets).toEqual([50]);
    expect(a.link.targets).toEqual([350]);
  });
});
