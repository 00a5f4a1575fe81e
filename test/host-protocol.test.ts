// The host's guest sessions against a fake guest: Hello rules, refusals with
// their close codes, targets with generations, status intake and the pool.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bodies, encodeFrame, MAX_HELLO_GENERATION } from '@memballoon/protocol';
import { startHost, type HostHandle } from '@memballoon/host';
import { connectFake, helloFor, registerVm } from './support/fake-guest.js';
import { tempDataDir } from './support/host.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

let host: HostHandle;
let data: { dir: string; remove: () => void };

beforeEach(async () => {
  data = tempDataDir();
  // The default Hello timeout: a short one would close guests that did send
  // Hello whenever a busy machine stalls this process past it (the timer runs
  // before the socket is read). Only the Hello-timeout test shortens it.
  host = await startHost({
    listenPort: 0,
    dataDir: data.dir,
    poolSizeMib: 1024,
    reclaimTimeoutMs: 2_000,
    policyIntervalMs: 0,
    dashboard: false,
    fusion: { ksm: null },
  });
});
afterEach(async () => {
  await cleanUp(
    () => host?.close(),
    () => data?.remove(),
  );
});

const running = (name: string) => host.service.isRunning(name);

describe('guest sessions', () => {
  it('welcomes a registered VM with its default balloon and a generation, and counts its status into the pool', async () => {
    registerVm(host, { name: 'a', memoryMib: 512 });
    host.service.modifyVm('a', { defaultBalloonMib: 100 });
    const g = await connectFake(host.url);
    g.send(helloFor('a', 512));
    const welcome = await g.next('welcome');
    expect(welcome).toMatchObject({ targetMib: 100, generation: 1, statsIntervalMs: 1000, heartbeatIntervalMs: 2000, pageFusion: false });
    expect(host.service.hostView().pool).toEqual({ sizeMib: 1024, heldMib: 512, reclaimedMib: 0, freeMib: 512 });
    g.send(bodies.balloonStatus({ generation: 1, targetMib: 100, actualMib: 100, lockedMib: 100, state: 'steady' }));
    await waitFor(() => host.service.hostView().pool.heldMib === 412, { what: 'the pool to count the balloon' });
    // Latest wins, with increasing generations.
    await host.service.setBalloon('a', 200);
    await host.service.setBalloon('a', 300);
    expect(await g.next('setBalloonTarget')).toEqual({ targetMib: 200, generation: 2 });
    expect(await g.next('setBalloonTarget')).toEqual({ targetMib: 300, generation: 3 });
    // An actual above the target sent never counts: it is clamped to the target (and logged).
    g.send(bodies.balloonStatus({ generation: 3, targetMib: 300, actualMib: 500, lockedMib: 0, state: 'steady' }));
    await waitFor(() => host.service.vmView('a').balloon?.actualMib === 300);
    expect(host.service.hostView().pool.heldMib).toBe(212);
    // A status for a generation never sent is ignored.
    g.send(bodies.balloonStatus({ generation: 99, targetMib: 1, actualMib: 1, lockedMib: 0, state: 'steady' }));
    g.send(bodies.memoryStats({ totalBytes: 512 * 2 ** 20, availableBytes: 10 * 2 ** 40, freeBytes: 100 * 2 ** 20 }));
    await waitFor(() => host.service.vmView('a').stats);
    expect(host.service.vmView('a').stats).toMatchObject({ availableMib: 512, freeMib: 100, totalMib: 512 });
    expect(host.service.vmView('a').balloon?.generation).toBe(3);
    // Disconnect gives everything back.
    g.close();
    await waitFor(() => !running('a'), { what: 'the session to end' });
    expect(host.service.hostView().pool).toMatchObject({ heldMib: 0, freeMib: 1024 });
  });

  it('answers an unknown VM exactly as a known one with a wrong token (auth_failed, 4007): names cannot be listed', async () => {
    registerVm(host, { name: 'known', memoryMib: 256 });
    const answers: Array<{ code: string; message: string; retryAfterMs: number; closeCode: number }> = [];
    for (const name of ['known', 'unknown']) {
      const g = await connectFake(host.url);
      g.send(helloFor(name, 256, { credential: 'not-the-token' }));
      const err = await g.next('error');
      const closed = await g.waitClosed();
      answers.push({ ...err, message: err.message.replace(name, 'NAME'), closeCode: closed.code });
    }
    expect(answers[0]).toEqual(answers[1]);
    expect(answers[0]).toMatchObject({ code: 'auth_failed', closeCode: 4007 });
    expect(answers[0]!.message).toMatch(/not registered on this host, or its token is wrong/);
  });

  it('tells an unknown VM apart (unknown_vm, 4006) only where guests have no tokens', async () => {
    const open = tempDataDir();
    const demo = await startHost({
      listenPort: 0,
      dataDir: open.dir,
      poolSizeMib: 256,
      insecureNoAuth: true,
      policyIntervalMs: 0,
      dashboard: false,
      fusion: false,
    });
    try {
      const g = await connectFake(demo.url);
      g.send(helloFor('nobody', 256, { credential: '' }));
      const err = await g.next('error');
      expect(err.code).toBe('unknown_vm');
      expect(err.message).toMatch(/VM 'nobody' is not registered on this host.*--auto-register/);
      expect((await g.waitClosed()).code).toBe(4006);
    } finally {
      await demo.close();
      open.remove();
    }
  });

  it('refuses a second guest for the same VM (4008)', async () => {
    registerVm(host, { name: 'a', memoryMib: 256 });
    const g1 = await connectFake(host.url);
    g1.send(helloFor('a', 256));
    await g1.next('welcome');
    const g2 = await connectFake(host.url);
    g2.send(helloFor('a', 256));
    expect((await g2.next('error')).code).toBe('already_connected');
    expect((await g2.waitClosed()).code).toBe(4008);
    expect(running('a')).toBe(true);
  });

  it('refuses a wrong protocol version (4002), a malformed frame (4001), a text frame, and a missing subprotocol', async () => {
    const g1 = await connectFake(host.url);
    const bytes = encodeFrame(1, helloFor('a', 256));
    // protocol_version is field 1 (varint) at the start of the Envelope.
    expect(bytes[0]).toBe(0x08);
    const wrong = Uint8Array.from(bytes);
    wrong[1] = 7;
    g1.sendRaw(wrong);
    const e1 = await g1.next('error');
    expect(e1).toMatchObject({ code: 'unsupported_version' });
    expect(e1.message).toMatch(/protocol version 7 is not supported/);
    expect((await g1.waitClosed()).code).toBe(4002);

    const g2 = await connectFake(host.url);
    g2.sendRaw(Uint8Array.from([0xff, 0xff, 0xff, 0x01, 0x02]));
    expect((await g2.next('error')).code).toBe('malformed_frame');
    expect((await g2.waitClosed()).code).toBe(4001);

    const g3 = await connectFake(host.url);
    g3.sendRaw('hello');
    expect((await g3.next('error')).message).toMatch(/binary/);
    expect((await g3.waitClosed()).code).toBe(4001);

    const g4 = await connectFake(host.url, { protocol: null });
    expect((await g4.next('error')).message).toMatch(/subprotocol must be 'memballoon.v1'/);
    expect((await g4.waitClosed()).code).toBe(4002);
  });

  it('refuses an absurd generation in Hello at the edge, and a resume at the top still gets targets a guest can decode', async () => {
    registerVm(host, { name: 'a', memoryMib: 256 });
    const balloon = (generation: number) => ({ actualMib: 0, lockedMib: 0, generation, targetMib: 0 });
    // 2^53 − 1 once made every later generation 2^53, which the agent refused: locked out for good.
    const g1 = await connectFake(host.url);
    g1.send(helloFor('a', 256, { balloon: balloon(Number.MAX_SAFE_INTEGER) }));
    const e1 = await g1.next('error');
    expect(e1.code).toBe('out_of_range');
    expect(e1.message).toMatch(/hello\.balloon\.generation/);
    expect((await g1.waitClosed()).code).toBe(4003);
    expect(running('a')).toBe(false);
    // The largest generation a Hello may carry: the host counts on from it,
    // and the fake guest decodes with the same codec as the real agent.
    const g2 = await connectFake(host.url);
    g2.send(helloFor('a', 256, { balloon: balloon(MAX_HELLO_GENERATION) }));
    expect((await g2.next('welcome')).generation).toBe(MAX_HELLO_GENERATION + 1);
    await host.service.setBalloon('a', 10);
    expect(await g2.next('setBalloonTarget')).toEqual({ targetMib: 10, generation: MAX_HELLO_GENERATION + 2 });
    g2.close();
  });

  it('refuses absurd sizes in Hello and frames that are not Hello first', async () => {
    const g1 = await connectFake(host.url);
    g1.send(
      helloFor('a', 256, {
        facts: {
          pid: 1,
          totalMemoryMib: 2 ** 31,
          pageSizeBytes: 4096,
          chunkSizeMib: 1,
          capabilities: { pin: false, pageFusion: false, deflateOnPressure: false },
          domain: 'process',
          hostname: '',
        },
      }),
    );
    const e1 = await g1.next('error');
    expect(e1.code).toBe('out_of_range');
    expect(e1.message).toMatch(/total_memory_mib/);
    expect((await g1.waitClosed()).code).toBe(4003);

    const g2 = await connectFake(host.url);
    g2.send(bodies.memoryStats({}));
    expect((await g2.next('error')).code).toBe('unexpected_message');
    expect((await g2.waitClosed()).code).toBe(4005);
  });

  it('refuses a balloon status beyond the guest memory without ending the session', async () => {
    registerVm(host, { name: 'a', memoryMib: 256 });
    const g = await connectFake(host.url);
    g.send(helloFor('a', 256));
    await g.next('welcome');
    g.send(bodies.balloonStatus({ generation: 1, targetMib: 0, actualMib: 100_000, lockedMib: 0, state: 'steady' }));
    const e = await g.next('error');
    expect(e.code).toBe('out_of_range');
    expect(e.message).toMatch(/above the guest's memory of 256 MiB/);
    expect(running('a')).toBe(true);
    expect(host.service.hostView().pool.heldMib).toBe(256);
  });

  it('closes a guest that sends no Hello in time (4011)', async () => {
    await host.close();
    host = await startHost({
      listenPort: 0,
      dataDir: data.dir,
      poolSizeMib: 1024,
      limits: { helloTimeoutMs: 300 },
      policyIntervalMs: 0,
      dashboard: false,
      fusion: { ksm: null },
    });
    const g = await connectFake(host.url);
    expect((await g.next('error')).code).toBe('timeout');
    expect((await g.waitClosed()).code).toBe(4011);
  });

  it('terminates a guest that stops answering heartbeats, and its holding returns', async () => {
    await host.close();
    host = await startHost({
      listenPort: 0,
      dataDir: data.dir,
      poolSizeMib: 1024,
      limits: { heartbeatIntervalMs: 100 },
      policyIntervalMs: 0,
      dashboard: false,
      fusion: { ksm: null },
    });
    registerVm(host, { name: 'mute', memoryMib: 256 });
    const g = await connectFake(host.url, { autoPong: false });
    g.send(helloFor('mute', 256));
    expect((await g.next('welcome')).heartbeatIntervalMs).toBe(100);
    await waitFor(() => !running('mute'), { what: 'the silent guest to be dropped' });
    expect(host.service.hostView().pool.heldMib).toBe(0);
    await g.waitClosed();
  });

  it('takes any frame as a sign of life: a guest that answers pings with stats instead of pongs stays', async () => {
    await host.close();
    host = await startHost({
      listenPort: 0,
      dataDir: data.dir,
      poolSizeMib: 1024,
      limits: { heartbeatIntervalMs: 100 },
      policyIntervalMs: 0,
      dashboard: false,
      fusion: { ksm: null },
    });
    registerVm(host, { name: 'chatty', memoryMib: 256 });
    const g = await connectFake(host.url, { autoPong: false });
    let pings = 0;
    g.ws.on('ping', () => {
      pings++;
      g.send(bodies.memoryStats({ totalBytes: 256 * 2 ** 20, availableBytes: 128 * 2 ** 20 }));
    });
    g.send(helloFor('chatty', 256));
    await g.next('welcome');
    // Twice the missed-heartbeat budget (3): a silent guest would be gone by now.
    await waitFor(() => pings >= 6, { what: '6 pings from a host that sends nothing else' });
    expect(running('chatty')).toBe(true);
    expect(g.closed).toBeUndefined();
    g.close();
    await waitFor(() => !running('chatty'));
  });

  it('caps the frame rate (4010) and the frame size (1009)', async () => {
    await host.close();
    host = await startHost({
      listenPort: 0,
      dataDir: data.dir,
      poolSizeMib: 1024,
      limits: { maxMessagesPerSecond: 20, maxPayloadBytes: 4096 },
      policyIntervalMs: 0,
      dashboard: false,
      fusion: { ksm: null },
    });
    registerVm(host, { name: 'loud', memoryMib: 256 });
    const g = await connectFake(host.url);
    g.send(helloFor('loud', 256));
    await g.next('welcome');
    for (let i = 0; i < 100; i++) g.send(bodies.memoryStats({}));
    const e = await g.next('error');
    expect(e).toMatchObject({ code: 'rate_limited' });
    expect((await g.waitClosed()).code).toBe(4010);
    await waitFor(() => !running('loud'));

    const big = await connectFake(host.url);
    big.sendRaw(new Uint8Array(8192));
    expect((await big.waitClosed()).code).toBe(1009);
  });

  it('auto-registers with the memory the guest reports when enabled', async () => {
    await host.close();
    host = await startHost({
      listenPort: 0,
      dataDir: data.dir,
      poolSizeMib: 1024,
      autoRegister: true,
      policyIntervalMs: 0,
      dashboard: false,
      fusion: { ksm: null },
    });
    const g = await connectFake(host.url);
    g.send(helloFor('newcomer', 300));
    await g.next('welcome');
    expect(host.service.vmView('newcomer')).toMatchObject({ memoryMib: 300, state: 'running' });
  });

  it('resumes a reconnecting guest at the balloon it holds, with a higher generation', async () => {
    registerVm(host, { name: 'a', memoryMib: 512 });
    const g = await connectFake(host.url);
    g.send(helloFor('a', 512, { balloon: { actualMib: 200, lockedMib: 200, generation: 41, targetMib: 200 } }));
    expect(await g.next('welcome')).toMatchObject({ targetMib: 200, generation: 42 });
    expect(host.service.hostView().pool.heldMib).toBe(312);
  });

  it('admits a starting guest by reclaiming from the others, and refuses cleanly when they do not inflate', async () => {
    for (const n of ['a', 'b', 'c']) registerVm(host, { name: n, memoryMib: 512 });
    await host.close();
    host = await startHost({
      listenPort: 0,
      dataDir: data.dir,
      poolSizeMib: 768,
      reclaimTimeoutMs: 1_500,
      retryAfterMs: 1234,
      policyIntervalMs: 0,
      dashboard: false,
      fusion: { ksm: null },
    });
    const a = await connectFake(host.url);
    a.send(helloFor('a', 512));
    await a.next('welcome');
    const b = await connectFake(host.url);
    b.send(helloFor('b', 512));
    // b waits: a is asked to inflate by 256 MiB.
    const t = await a.next('setBalloonTarget');
    expect(t.targetMib).toBe(256);
    expect(running('b')).toBe(false);
    a.send(bodies.balloonStatus({ generation: t.generation, targetMib: 256, actualMib: 256, lockedMib: 256, state: 'steady' }));
    await b.next('welcome');
    expect(host.service.hostView().pool).toMatchObject({ heldMib: 768, freeMib: 0 });

    // c: a and b are asked for more, never answer: c is refused, targets go back.
    const c = await connectFake(host.url);
    c.send(helloFor('c', 512));
    const ta = await a.next('setBalloonTarget');
    const tb = await b.next('setBalloonTarget');
    expect(ta.targetMib - 256 + tb.targetMib).toBe(512);
    const e = await c.next('error', 5_000);
    expect(e).toMatchObject({ code: 'pool_exhausted', retryAfterMs: 1234 });
    expect(e.message).toMatch(/starting VM .c.*after 2 s, \d+ MiB still missing: VM 'a' pinned 256 of \d+ MiB, VM 'b' pinned 0 of \d+ MiB.*undone/);
    expect((await c.waitClosed()).code).toBe(4009);
    expect((await a.next('setBalloonTarget')).targetMib).toBe(256);
    expect((await b.next('setBalloonTarget')).targetMib).toBe(0);
    expect(host.service.vmView('a').balloon?.targetMib).toBe(256);
    expect(host.service.hostView().pool.heldMib).toBeLessThanOrEqual(768);
  });

  it('re-plans over the others when a guest stops short of its reclaim target', async () => {
    for (const n of ['a', 'b', 'c']) registerVm(host, { name: n, memoryMib: 512 });
    await host.close();
    host = await startHost({
      listenPort: 0,
      dataDir: data.dir,
      poolSizeMib: 1024,
      reclaimTimeoutMs: 5_000,
      policyIntervalMs: 0,
      dashboard: false,
      fusion: { ksm: null },
    });
    const a = await connectFake(host.url);
    a.send(helloFor('a', 512));
    await a.next('welcome');
    const b = await connectFake(host.url);
    b.send(helloFor('b', 512));
    await b.next('welcome');
    // Pool full; c needs 512: a and b are asked for 256 each.
    const c = await connectFake(host.url);
    c.send(helloFor('c', 512));
    const ta = await a.next('setBalloonTarget');
    const tb = await b.next('setBalloonTarget');
    expect(ta.targetMib + tb.targetMib).toBe(512);
    // a pins only 100 and stops short; b is asked for the rest and pins it.
    a.send(bodies.balloonStatus({ generation: ta.generation, targetMib: ta.targetMib, actualMib: 100, lockedMib: 100, state: 'short', reason: 'guest_floor' }));
    expect(await a.next('setBalloonTarget')).toMatchObject({ targetMib: 100 });
    const tb2 = await b.next('setBalloonTarget');
    expect(tb2.targetMib).toBe(412);
    b.send(bodies.balloonStatus({ generation: tb2.generation, targetMib: 412, actualMib: 412, lockedMib: 412, state: 'steady' }));
    await c.next('welcome');
    expect(host.service.hostView().pool).toMatchObject({ heldMib: 1024, freeMib: 0 });
  });

  it('funds a deflate from the others, or refuses it and changes nothing', async () => {
    registerVm(host, { name: 'a', memoryMib: 512 });
    registerVm(host, { name: 'b', memoryMib: 512 });
    host.service.modifyVm('a', { defaultBalloonMib: 400 });
    const a = await connectFake(host.url);
    a.send(helloFor('a', 512, { balloon: { actualMib: 400, lockedMib: 400, generation: 1, targetMib: 400 } }));
    await a.next('welcome');
    const b = await connectFake(host.url);
    b.send(helloFor('b', 512));
    await b.next('welcome');
    // held: a 112 + b 512 = 624 of 1024: free 400. Deflating a to 0 costs 400: funded.
    await host.service.setBalloon('a', 0);
    expect(host.service.hostView().pool.freeMib).toBe(0);
    // a inflates again; c takes the freed memory; deflating a now needs b and c
    // to inflate; they never do: refused, and every target is as before.
    await host.service.setBalloon('a', 300);
    a.send(bodies.balloonStatus({ generation: 3, targetMib: 300, actualMib: 300, lockedMib: 300, state: 'steady' }));
    await waitFor(() => host.service.hostView().pool.freeMib === 300);
    registerVm(host, { name: 'c', memoryMib: 300 });
    const c = await connectFake(host.url);
    c.send(helloFor('c', 300));
    await c.next('welcome');
    expect(host.service.hostView().pool.freeMib).toBe(0);
    await expect(host.service.setBalloon('a', 0)).rejects.toThrow(/deflating VM 'a' to 0 MiB.*still missing.*VM 'b' pinned 0 of/);
    expect(host.service.vmView('a').balloon?.targetMib).toBe(300);
    expect(host.service.vmView('c').balloon?.targetMib).toBe(0);
    expect(host.service.vmView('b').balloon?.targetMib).toBe(0);
  });
});
