// The service without sockets: a recording GuestLink stands in for a session.
import { bodies, type BalloonStatus, type Hello } from '@memballoon/protocol';
import { describe, expect, it, vi } from 'vitest';
import type { HostError } from '../errors.js';
import type { GuestLink } from './host-service.js';
import { testHello, testLogger, testService, testStats } from './test-fixtures.js';

const logger = testLogger;

function service(poolSizeMib = 1024, autoRegister = false) {
  const counted: string[] = [];
  const s = testService({
    poolSizeMib,
    autoRegister,
    reclaimTimeoutMs: 200,
    // These tests are about the pool and the sessions; guest tokens have their own tests.
    guestAuth: false,
    counters: {
      countSession: (v) => counted.push(`session:${v}`),
      countRefusal: (r) => counted.push(`refusal:${r}`),
      countProtocolError: (c) => counted.push(`protocol:${c}`),
    },
  });
  return { s, counted };
}

function link(): Omit<GuestLink, 'open'> & { open: boolean; targets: Array<[number, number]>; ended: unknown[] } {
  const l = {
    targets: [] as Array<[number, number]>,
    ended: [] as unknown[],
    open: true,
    sendTarget(t: number, g: number) {
      l.targets.push([t, g]);
    },
    end(r: unknown) {
      l.ended.push(r);
      l.open = false;
    },
  };
  return l;
}

const hello = (vmName: string, totalMemoryMib: number): Hello => testHello(vmName, totalMemoryMib);

const code = async (p: Promise<unknown> | (() => unknown)) => {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return (e as HostError).code;
  }
  return undefined;
};

describe('HostService', () => {
  it('validates createvm, modifyvm and unregistervm', async () => {
    const { s } = service();
    expect(s.createVm({ name: 'a', memoryMib: 512 })).toMatchObject({ name: 'a', state: 'poweroff', memoryMib: 512, defaultBalloonMib: 0 });
    expect(await code(() => s.createVm({ name: 'a', memoryMib: 1 }))).toBe('already_exists');
    expect(await code(() => s.createVm({ name: '', memoryMib: 1 }))).toBe('invalid_argument');
    expect(await code(() => s.createVm({ name: 'b', memoryMib: 0 }))).toBe('out_of_range');
    expect(await code(() => s.createVm({ name: 'b', memoryMib: '5' as never }))).toBe('invalid_argument');
    expect(await code(() => s.modifyVm('a', { defaultBalloonMib: 461 }))).toBe('out_of_range');
    expect(await code(() => s.modifyVm('a', { memoryMib: 100 }))).toBeUndefined();
    expect(await code(() => s.modifyVm('a', { defaultBalloonMib: 90 }))).toBe('out_of_range');
    expect(await code(() => s.modifyVm('a', { frob: 1 } as never))).toBe('invalid_argument');
    expect(await code(() => s.modifyVm('a', { memoryWeight: 0 }))).toBe('out_of_range');
    expect(await code(() => s.modifyVm('a', { balloonPolicy: 'magic' as never }))).toBe('invalid_argument');
    expect(await code(() => s.modifyVm('a', { pageFusion: 'yes' as never }))).toBe('invalid_argument');
    expect(
      s.modifyVm('a', {
        memoryMib: 512,
        defaultBalloonMib: 64,
        pageFusion: true,
        balloonPolicy: 'auto',
        memoryMinMib: 128,
        balloonMaxMib: 300,
        memoryWeight: 500,
        memoryBufferPercent: 10,
      }),
    ).toMatchObject({
      memoryMib: 512,
      defaultBalloonMib: 64,
      pageFusion: true,
      balloonPolicy: 'auto',
      memoryMinMib: 128,
      balloonMaxMib: 300,
      memoryWeight: 500,
      memoryBufferPercent: 10,
    });
    expect(await code(() => s.modifyVm('zz', {}))).toBe('not_found');
    s.unregisterVm('a');
    expect(await code(() => s.unregisterVm('a'))).toBe('not_found');
  });

  it('refuses resize settings while running, allows policy settings, and notifies subscribers', async () => {
    const { s, counted } = service();
    s.createVm({ name: 'a', memoryMib: 512 });
    let changes = 0;
    const off = s.subscribe(() => changes++);
    const l = link();
    const r = await s.openSession(hello('a', 512), l, logger);
    expect(r.ok).toBe(true);
    expect(changes).toBeGreaterThan(0);
    expect(await code(() => s.modifyVm('a', { memoryMib: 1024 }))).toBe('vm_running');
    expect(() => s.modifyVm('a', { defaultBalloonMib: 10 })).toThrow("VM 'a' is running: modifyvm needs the VM powered off (to change defaultBalloonMib)");
    expect(s.modifyVm('a', { memoryMinMib: 100, balloonPolicy: 'auto' })).toMatchObject({ memoryMinMib: 100, state: 'running' });
    expect(await code(() => s.unregisterVm('a'))).toBe('vm_running');
    off();
    const before = changes;
    await s.setBalloon('a', 10);
    expect(changes).toBe(before);
    expect(counted).toEqual(['session:a']);
  });

  it('controlvm: 90 % rule, not running, latest wins with increasing generations', async () => {
    const { s, counted } = service();
    s.createVm({ name: 'a', memoryMib: 1000 });
    expect(await code(s.setBalloon('a', 10))).toBe('not_running');
    const l = link();
    await s.openSession(hello('a', 1000), l, logger);
    expect(await code(s.setBalloon('a', 900))).toBe('out_of_range');
    expect(await code(s.setBalloon('a', -1))).toBe('out_of_range');
    expect(await code(s.setBalloon('a', '5' as never))).toBe('out_of_range');
    expect(await code(s.setBalloon('nope', 5))).toBe('not_found');
    await s.setBalloon('a', 899);
    await s.setBalloon('a', 100);
    expect(l.targets).toEqual([
      [899, 2],
      [100, 3],
    ]);
    expect(s.vmView('a').balloon).toMatchObject({ targetMib: 100, generation: 3, state: 'inflating' });
    expect(counted).toContain('refusal:balloon_too_large');
    expect(counted).toContain('refusal:not_running');
  });

  it('a disconnect, and the host closing, give everything back; generations survive sessions', async () => {
    const { s } = service(600);
    s.createVm({ name: 'a', memoryMib: 512 });
    const l = link();
    const r = await s.openSession(hello('a', 512), l, logger);
    if (!r.ok) throw new Error('refused');
    expect(s.hostView().pool.freeMib).toBe(88);
    s.closeSession('a', 'some other session', 'x');
    expect(s.isRunning('a')).toBe(true);
    s.closeSession('a', r.sessionId, 'gone');
    expect(s.hostView().pool).toMatchObject({ heldMib: 0, freeMib: 600 });
    const l2 = link();
    const r2 = await s.openSession(hello('a', 512), l2, logger);
    expect(r2.ok && r2.welcome.generation).toBe(2);
    s.close();
    expect(l2.ended).toEqual([{ kind: 'shutdown' }]);
    expect(s.hostView().pool.heldMib).toBe(0);
    const l3 = link();
    expect(await s.openSession(hello('a', 512), l3, logger)).toMatchObject({ ok: false, code: 'shutting_down' });
  });

  it('gives up an admission when the guest leaves while others inflate, and undoes the reclaim', async () => {
    const { s } = service(512);
    s.createVm({ name: 'a', memoryMib: 512 });
    s.createVm({ name: 'b', memoryMib: 256 });
    const la = link();
    await s.openSession(hello('a', 512), la, logger);
    const lb = link();
    const pending = s.openSession(hello('b', 256), lb, logger);
    // The reclaim raises a's target before b's admission can finish.
    await vi.waitFor(() => expect(la.targets.at(-1)).toEqual([256, 2]), { timeout: 5000 });
    lb.open = false;
    expect(await pending).toMatchObject({ ok: false });
    expect(la.targets.at(-1)).toEqual([0, 3]);
    expect(s.isRunning('b')).toBe(false);
  });

  it("samples each running VM's charted figures as its VmView shows them, and nothing for one powered off", async () => {
    const { s } = service(4096);
    s.createVm({ name: 'a', memoryMib: 1000 });
    s.createVm({ name: 'b', memoryMib: 512 });
    s.createVm({ name: 'off', memoryMib: 256 });
    const ra = await s.openSession(hello('a', 1000), link(), logger);
    await s.openSession(hello('b', 512), link(), logger);
    if (!ra.ok) throw new Error('a not admitted');
    await s.setBalloon('a', 300);
    s.onStats('a', ra.sessionId, testStats(1000, 420));
    const sampled: unknown[] = [];
    s.forEachBalloonSample((name, startedAtMs, targetMib, actualMib, availableMib) => sampled.push({ name, startedAtMs, targetMib, actualMib, availableMib }));
    // The oracle: the same four numbers read from the VmViews.
    const fromViews = s.listVms(true).map((v) => ({
      name: v.name,
      startedAtMs: v.startedAtMs,
      targetMib: v.balloon?.targetMib,
      actualMib: v.balloon?.actualMib,
      availableMib: v.stats?.availableMib,
    }));
    expect(sampled).toEqual(fromViews);
    expect(sampled).toHaveLength(2);
    expect(sampled[0]).toMatchObject({ name: 'a', targetMib: 300, availableMib: 420 });
    expect(sampled[1]).toMatchObject({ name: 'b', availableMib: undefined });
  });

  it("keeps a guest's latest statistics; a view taken before a stats frame keeps the figures it showed", async () => {
    const { s } = service(4096);
    s.createVm({ name: 'a', memoryMib: 1000 });
    const r = await s.openSession(hello('a', 1000), link(), logger);
    if (!r.ok) throw new Error('a not admitted');
    s.onStats('a', r.sessionId, testStats(1000, 400));
    const before = s.vmView('a');
    expect(before.stats).toMatchObject({ availableMib: 400, freeMib: 400, totalMib: 1000 });
    s.onStats('a', r.sessionId, testStats(1000, 300));
    expect(before.stats).toMatchObject({ availableMib: 400, freeMib: 400 });
    const after = s.vmView('a');
    expect(after.stats).toMatchObject({ availableMib: 300, freeMib: 300, totalMib: 1000 });
    expect(Object.keys(after.stats!)).toEqual(Object.keys(before.stats!));
    // Still clamped to the VM's memory when written in place.
    s.onStats('a', r.sessionId, testStats(5000, 4000));
    expect(s.vmView('a').stats).toMatchObject({ availableMib: 1000, totalMib: 1000 });
    expect(s.listVms(true)[0]!.stats).not.toBe(s.vmView('a').stats);
  });

  it("keeps each guest's newest balloon status as its own copy: the view follows the newest, whatever becomes of the frames", async () => {
    const { s } = service(4096);
    s.createVm({ name: 'a', memoryMib: 1000 });
    const r = await s.openSession(hello('a', 1000), link(), logger);
    if (!r.ok) throw new Error('a not admitted');
    await s.setBalloon('a', 200);
    const generation = s.vmView('a').balloon!.generation;
    const status = (actualMib: number, state: BalloonStatus['state'], reason: BalloonStatus['reason']) =>
      bodies.balloonStatus({ generation, targetMib: 200, actualMib, lockedMib: actualMib, state, reason }).value as BalloonStatus;
    const first = status(100, 'short', 'not_permitted');
    s.onStatus('a', r.sessionId, first);
    expect(s.vmView('a').balloon).toMatchObject({ actualMib: 100, state: 'short', reason: 'not_permitted' });
    first.state = 'steady'; // the frame's object is not what the host keeps
    expect(s.vmView('a').balloon).toMatchObject({ state: 'short', reason: 'not_permitted' });
    s.onStatus('a', r.sessionId, status(200, 'steady', 'none'));
    expect(s.vmView('a').balloon).toMatchObject({ actualMib: 200, state: 'steady', reason: 'none' });
  });
});
