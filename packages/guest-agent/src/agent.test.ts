import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bodies, ERROR_CODES, type BalloonStatus } from '@memballoon/protocol';
import { startAgent, type AgentHandle, type AgentOptions } from './agent.js';
import type { DomainSource, DomainStats } from './domain/source.js';
import type { AgentError } from './errors.js';
import { StubHost, type StubConnection } from './test-support/stub-host.js';
import { poll } from './test-support/poll.js';

const MIB = 1024 * 1024;

/** A 1 GiB guest with plenty free, so the floor never interferes. */
const fakeDomain: DomainSource = {
  kind: 'machine',
  totalMib: 1024,
  availability: () => ({ totalBytes: 1024 * MIB, availableBytes: 900 * MIB }),
  stats: (): DomainStats => ({
    domain: 'machine',
    totalBytes: 1024 * MIB,
    availableBytes: 900 * MIB,
    freeBytes: 800 * MIB,
    diskCachesBytes: 50 * MIB,
    swapInBytes: 0,
    swapOutBytes: 0,
    majorFaults: 1,
    minorFaults: 2,
    psiSomeAvg10Percent: 0.5,
    psiFullAvg10Percent: 0,
    sharedBytes: 0,
  }),
};

describe('agent against a stub host', () => {
  let host: StubHost;
  let agent: AgentHandle | null = null;

  const start = async (extra: Partial<AgentOptions> = {}): Promise<AgentHandle> => {
    agent = await startAgent({
      host: host.url,
      name: 'vm-test',
      token: 'secret',
      domain: fakeDomain,
      workerThreads: 0,
      oomScoreAdj: null,
      backoff: { baseMs: 20, maxMs: 100 },
      ...extra,
    });
    return agent;
  };
  const helloOn = (conn: StubConnection) => host.received(conn, 'hello')[0];
  const lastStatus = (conn: StubConnection): BalloonStatus | undefined => host.received(conn, 'balloonStatus').at(-1);

  beforeEach(async () => {
    host = await StubHost.start();
  });

  afterEach(async () => {
    await agent?.close();
    agent = null;
    await host.close();
  });

  it('says Hello with its facts, applies the Welcome target, sends status and statistics', async () => {
    const a = await start();
    const conn = await poll(() => host.latest, 'a connection');
    const hello = await poll(() => helloOn(conn), 'Hello');
    expect(hello).toMatchObject({
      vmName: 'vm-test',
      credential: 'secret',
      facts: { pid: process.pid, totalMemoryMib: 1024, pageSizeBytes: 4096, chunkSizeMib: 1, domain: 'machine' },
      balloon: { actualMib: 0, generation: 0 },
    });
    host.welcome(conn, { targetMib: 16, generation: 3, statsIntervalMs: 50 });
    await poll(() => lastStatus(conn)?.state === 'steady' && lastStatus(conn)!.actualMib === 16, 'a steady status at 16 MiB');
    expect(lastStatus(conn)).toMatchObject({ generation: 3, targetMib: 16, actualMib: 16 });
    expect(a.balloon.actualMib).toBe(16);
    expect(a.engine.verifyPages()).toBe((16 * MIB) / 4096);
    expect(a.status).toBe('connected');
    // Statistics come at the host's interval (several within a short wait).
    await poll(() => host.received(conn, 'memoryStats').length >= 3, 'three MemoryStats');
    expect(host.received(conn, 'memoryStats')[0]).toMatchObject({
      totalBytes: 1024 * MIB,
      availableBytes: 900 * MIB,
      domain: 'machine',
      psiSomeAvg10Percent: 0.5,
    });
    expect(host.received(conn, 'memoryStats')[0]!.agentRssBytes).toBeGreaterThan(0);
  });

  it('follows SetBalloonTarget, reports progress, and ignores an older generation', async () => {
    const a = await start({ chunkMib: 1 });
    const targets: number[] = [];
    a.on('target', (t) => targets.push(t.targetMib));
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(conn), 'Hello');
    host.welcome(conn, { targetMib: 0, generation: 1 });
    await poll(() => a.status === 'connected', 'connected');
    host.send(conn, bodies.setBalloonTarget({ targetMib: 96, generation: 2 }));
    await poll(() => lastStatus(conn)?.actualMib === 96 && lastStatus(conn)!.state === 'steady', 'the balloon at 96 MiB');
    // Progress on the way (at least one status while inflating), then the final one.
    expect(host.received(conn, 'balloonStatus').some((s) => s.state === 'inflating' && s.targetMib === 96)).toBe(true);
    host.send(conn, bodies.setBalloonTarget({ targetMib: 200, generation: 1 }));
    host.send(conn, bodies.setBalloonTarget({ targetMib: 8, generation: 4 }));
    await poll(() => lastStatus(conn)?.actualMib === 8 && lastStatus(conn)!.state === 'steady', 'the balloon at 8 MiB');
    expect(targets).toEqual([0, 96, 8]);
    expect(a.balloon).toMatchObject({ generation: 4, targetMib: 8, actualMib: 8 });
  });

  it('keeps its balloon across a reconnect and reports it in the next Hello', async () => {
    const a = await start();
    const disconnects: string[] = [];
    a.on('disconnected', (d) => disconnects.push(d.reason));
    const first = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(first), 'Hello');
    host.welcome(first, { targetMib: 12, generation: 7 });
    await poll(() => lastStatus(first)?.actualMib === 12 && lastStatus(first)!.state === 'steady', 'the balloon at 12 MiB');
    first.ws.terminate();
    const second = await poll(() => (host.connections.length >= 2 ? host.connections[1] : undefined), 'a second connection');
    const hello = await poll(() => helloOn(second!), 'the second Hello');
    expect(hello.balloon).toMatchObject({ actualMib: 12, generation: 7, targetMib: 12 });
    // Kept while away: the pages are still there.
    expect(a.engine.verifyPages()).toBe((12 * MIB) / 4096);
    expect(disconnects.length).toBe(1);
    host.welcome(second!, { targetMib: 12, generation: 7 });
    await poll(() => a.status === 'connected', 'connected again');
    expect(a.balloon.actualMib).toBe(12);
  });

  it('drops a silent host after three heartbeat intervals and reconnects', async () => {
    const a = await start();
    const first = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(first), 'Hello');
    // The stub never pings: the agent must notice.
    host.welcome(first, { heartbeatIntervalMs: 30 });
    await poll(() => host.connections.length >= 2, 'a reconnect after silence');
    expect(first.closed || first.ws.readyState !== 1).toBe(true);
    expect(a.status).not.toBe('closed');
  });

  it('refuses a malformed frame with an Error, reconnects, and loses nothing', async () => {
    const a = await start();
    const problems: AgentError[] = [];
    a.on('problem', (e) => problems.push(e));
    const first = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(first), 'Hello');
    host.welcome(first, { targetMib: 6, generation: 1 });
    await poll(() => lastStatus(first)?.actualMib === 6, 'the balloon at 6 MiB');
    first.ws.send(Buffer.from([0xff, 0xff, 0xff, 0x01]), { binary: true });
    await poll(() => first.closed, 'the agent to close the broken session');
    expect(host.received(first, 'error')[0]).toMatchObject({ code: 'malformed_frame' });
    expect(first.closeCode).toBe(4000 + ERROR_CODES.indexOf('malformed_frame'));
    expect(problems[0]?.code).toBe('protocol');
    const second = await poll(() => host.connections[1], 'a reconnect');
    expect((await poll(() => helloOn(second), 'Hello')).balloon.actualMib).toBe(6);
    expect(a.engine.verifyPages()).toBe((6 * MIB) / 4096);
  });

  it('refuses a target above the guest memory, keeps the session and the balloon', async () => {
    const a = await start();
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(conn), 'Hello');
    host.welcome(conn, { targetMib: 4, generation: 1 });
    await poll(() => lastStatus(conn)?.actualMib === 4, 'the balloon at 4 MiB');
    host.send(conn, bodies.setBalloonTarget({ targetMib: 4096, generation: 2 }));
    const err = await poll(() => host.received(conn, 'error')[0], 'an Error frame');
    expect(err.code).toBe('out_of_range');
    expect(err.message).toMatch(/above the guest's memory of 1024 MiB/);
    // Still the same session, still the same balloon; the next target works.
    host.send(conn, bodies.setBalloonTarget({ targetMib: 5, generation: 3 }));
    await poll(() => lastStatus(conn)?.actualMib === 5, 'the balloon at 5 MiB');
    expect(conn.closed).toBe(false);
    expect(host.connections.length).toBe(1);
    expect(a.balloon.generation).toBe(3);
  });

  it('stops, deflates and reports when the host refuses its credential', async () => {
    const a = await start();
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(conn), 'Hello');
    host.send(conn, bodies.error('auth_failed', 'bad token'));
    conn.ws.close(4000 + ERROR_CODES.indexOf('auth_failed'), 'auth_failed');
    const err = await a.stopped;
    expect(err?.code).toBe('rejected');
    expect(err?.message).toMatch(/auth_failed/);
    expect(a.status).toBe('closed');
    expect(host.connections.length).toBe(1);
  });

  it('ready() resolves on Welcome; settled({ targetMib }) waits for that target and its settling', async () => {
    const a = await start();
    const ready = a.ready();
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(conn), 'Hello');
    host.welcome(conn, { targetMib: 0, generation: 1, heartbeatIntervalMs: 600_000 });
    await ready;
    expect(a.status).toBe('connected');
    await a.ready(); // connected: at once
    const settled = a.settled({ targetMib: 24 });
    host.send(conn, bodies.setBalloonTarget({ targetMib: 24, generation: 2 }));
    expect(await settled).toMatchObject({ targetMib: 24, actualMib: 24, state: 'steady' });
    expect(a.engine.verifyPages()).toBe((24 * MIB) / 4096);
  });

  it("ready() rejects with the host's code on a refusal that is not final (pool_exhausted), and the agent keeps trying", async () => {
    const a = await start();
    const ready = a.ready();
    const first = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(first), 'Hello');
    host.send(first, bodies.error('pool_exhausted', 'the pool has 10 MiB free, the VM needs 512'));
    first.ws.close(4000 + ERROR_CODES.indexOf('pool_exhausted'), 'pool_exhausted');
    const err = await ready.then(
      () => null,
      (e: AgentError) => e,
    );
    expect(err).toMatchObject({ name: 'AgentError', code: 'rejected', hostCode: 'pool_exhausted' });
    expect(err!.message).toMatch(/refused VM 'vm-test': pool_exhausted: the pool has 10 MiB free/);
    // Not final: the agent tries again, and a later ready() sees the Welcome.
    const second = await poll(() => host.connections[1], 'a retry');
    await poll(() => helloOn(second), 'the second Hello');
    const again = a.ready();
    host.welcome(second, { heartbeatIntervalMs: 600_000 });
    await again;
    expect(a.status).toBe('connected');
  });

  it('ready() rejects on a final refusal (auth_failed) and the agent stops', async () => {
    const a = await start();
    const ready = a.ready();
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(conn), 'Hello');
    conn.ws.close(4000 + ERROR_CODES.indexOf('auth_failed'), 'auth_failed');
    await expect(ready).rejects.toMatchObject({ code: 'rejected', hostCode: 'auth_failed' });
    expect(await a.stopped).toMatchObject({ hostCode: 'auth_failed' });
    await expect(a.ready()).rejects.toMatchObject({ code: 'closed' });
  });

  it('ready() rejects with a timeout naming the last attempt when no host answers; close() rejects a waiter', async () => {
    // A host that accepts the socket and never welcomes: Hello times out again and again.
    const a = await start({ helloTimeoutMs: 50 });
    const err = await a.ready({ timeoutMs: 400 }).then(
      () => null,
      (e: AgentError) => e,
    );
    expect(err).toMatchObject({ code: 'timeout' });
    expect(err!.message).toMatch(/did not welcome VM 'vm-test' within 400 ms; the last attempt ended: no Welcome from the host/);
    const waiting = a.ready();
    const settling = a.settled({ targetMib: 99 });
    await a.close();
    agent = null;
    await expect(waiting).rejects.toMatchObject({ code: 'closed' });
    await expect(settling).rejects.toMatchObject({ code: 'closed' });
  });

  it('leaves the embedding process alone: no oom_score_adj, no signal handlers', async () => {
    const oomBefore = readFileSync('/proc/self/oom_score_adj', 'utf8');
    const signalsBefore = ['SIGINT', 'SIGTERM', 'SIGHUP'].map((s) => process.listenerCount(s));
    const a = await start({ oomScoreAdj: undefined });
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(conn), 'Hello');
    host.welcome(conn, { targetMib: 4, generation: 1, heartbeatIntervalMs: 600_000 });
    await a.settled({ targetMib: 4 });
    expect(readFileSync('/proc/self/oom_score_adj', 'utf8')).toBe(oomBefore);
    expect(['SIGINT', 'SIGTERM', 'SIGHUP'].map((s) => process.listenerCount(s))).toEqual(signalsBefore);
  });

  it('logs where the balloon comes to rest once per outcome: a balloon pushed down step by step at its floor is one line, not one per step (issue 17.8)', async () => {
    let workloadFreeMib = 200;
    let a: AgentHandle | null = null;
    const domain: DomainSource = {
      ...fakeDomain,
      availability: () => ({ totalBytes: 1024 * MIB, availableBytes: Math.max(0, workloadFreeMib - (a?.balloon.actualMib ?? 0)) * MIB }),
    };
    const lines: Array<{ level: string; message: string }> = [];
    const logger = Object.fromEntries(
      (['debug', 'info', 'warn', 'error'] as const).map((level) => [
        level,
        (_fields: Record<string, unknown>, message: string) => lines.push({ level, message }),
      ]),
    ) as unknown as AgentOptions['logger'];
    a = await start({ domain, floorMib: 64, logger });
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(conn), 'Hello');
    host.welcome(conn, { targetMib: 500, generation: 1, heartbeatIntervalMs: 600_000 });
    expect(await a.settled({ targetMib: 500 })).toMatchObject({ actualMib: 136, reason: 'guest_floor' });
    // The workload grows three times, each well past the pressure band: three deflates.
    for (const freeMib of [180, 160, 140]) {
      workloadFreeMib = freeMib;
      await poll(() => a!.balloon.actualMib === freeMib - 64 && !a!.engine.moving, `the balloon at ${freeMib - 64} MiB`);
    }
    host.send(conn, bodies.setBalloonTarget({ targetMib: 10, generation: 2 }));
    await a.settled({ targetMib: 10 });
    const outcomes = lines.filter((l) => /^balloon (short|reached)/.test(l.message));
    expect(outcomes.map((l) => `${l.level}: ${l.message.replace(/:.*$/, '')}`)).toEqual([
      'warn: balloon short of its target (136 of 500 MiB)',
      'warn: balloon short of its target (116 of 500 MiB)',
      'info: balloon reached its target of 10 MiB',
    ]);
  });

  it('close() deflates, reports the empty balloon and says Goodbye', async () => {
    const a = await start();
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(conn), 'Hello');
    host.welcome(conn, { targetMib: 10, generation: 1 });
    await poll(() => lastStatus(conn)?.actualMib === 10, 'the balloon at 10 MiB');
    await a.close();
    agent = null;
    await poll(() => host.received(conn, 'goodbye')[0], 'Goodbye');
    const statuses = host.received(conn, 'balloonStatus');
    expect(statuses.at(-1)).toMatchObject({ actualMib: 0, lockedMib: 0 });
    expect(host.received(conn, 'goodbye')[0]!.reason).toBe('shutdown');
    expect(a.status).toBe('closed');
  });

  it('tells a session plugin (page fusion) of each Welcome and disconnect, and lets it send', async () => {
    const calls: string[] = [];
    const a = await start({
      fusion: {
        welcomed: (pageFusion, send) => {
          calls.push(`welcomed:${pageFusion}`);
          send(bodies.sharedRegionRemoved({ regionId: 7 }));
        },
        disconnected: () => calls.push('disconnected'),
        close: () => calls.push('close'),
      },
    });
    const first = await poll(() => host.latest, 'a connection');
    await poll(() => helloOn(first), 'Hello');
    host.welcome(first, { pageFusion: true });
    await poll(() => host.received(first, 'sharedRegionRemoved')[0], 'the plugin frame');
    expect(a.send(bodies.sharedRegionRemoved({ regionId: 8 }))).toBe(true);
    await poll(() => host.received(first, 'sharedRegionRemoved')[1], 'a frame sent through the handle');
    first.ws.terminate();
    const second = await poll(() => host.connections[1], 'a reconnect');
    await poll(() => helloOn(second), 'Hello');
    expect(a.send(bodies.sharedRegionRemoved({ regionId: 9 }))).toBe(false);
    host.welcome(second, { pageFusion: false });
    await poll(() => calls.length >= 3, 'the second welcome');
    await a.close();
    agent = null;
    expect(calls).toEqual(['welcomed:true', 'disconnected', 'welcomed:false', 'disconnected', 'close']);
  });
});
