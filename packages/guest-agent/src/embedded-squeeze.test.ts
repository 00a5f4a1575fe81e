// An agent embedded in a test process squeezing a child it names (issue 16's
// domain fault): the balloon lives in this process, outside the child's
// process tree, and must still count as used in the child's domain. Before,
// with ProcessDomain(512, [child.pid]) the child saw 490 MiB available under
// a 300 MiB balloon.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from './agent.js';
import { BalloonEngine } from './balloon/engine.js';
import { ProcessDomain } from './domain/readers.js';
import { pressureSlackMib } from './balloon/floor.js';
import { StubHost } from './test-support/stub-host.js';
import { poll } from './test-support/poll.js';
import { procMib, within } from './test-support/child.js';

const MIB = 1024 * 1024;

describe('a balloon squeezing a child it names (process domain without the agent)', () => {
  let child: ChildProcess;

  beforeEach(async () => {
    // A workload holding 32 MiB of its own.
    child = spawn(process.execPath, ['-e', "globalThis.b = Buffer.alloc(32 << 20, 1); console.log('ready'); setInterval(() => {}, 1 << 30)"], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await within(once(child.stdout!, 'data'), 'the child to start');
  });

  afterEach(async () => {
    if (child.exitCode === null) {
      const exited = once(child, 'exit');
      child.kill();
      await exited;
    }
  });

  it("the engine: the child's domain shrinks by the balloon, and the floor stops it", async () => {
    const domain = new ProcessDomain(512, [child.pid!]);
    const engine = new BalloonEngine({ domain, workerThreads: 0, lock: false, floorMib: 64 });
    try {
      engine.setTarget(300);
      expect(await engine.settled()).toMatchObject({ actualMib: 300, state: 'steady' });
      const childMib = procMib(child.pid!, 'VmRSS');
      const availableMib = domain.availability().availableBytes / MIB;
      expect(availableMib).toBeGreaterThan(512 - childMib - 300 - 6);
      expect(availableMib).toBeLessThan(512 - childMib - 300 + 6);
      // Past the floor: stops there instead of taking the child's whole VM.
      engine.setTarget(500);
      const short = await engine.settled();
      expect(short).toMatchObject({ state: 'short', reason: 'guest_floor' });
      const leftMib = domain.availability().availableBytes / MIB;
      expect(leftMib).toBeGreaterThanOrEqual(64 - pressureSlackMib(64));
      expect(leftMib).toBeLessThan(64 + 8);
    } finally {
      await engine.close();
    }
  });

  it("startAgent({ processes: [child] }): the host is told the child's availability under the balloon", async () => {
    const host = await StubHost.start();
    let agent: AgentHandle | null = null;
    try {
      agent = await startAgent({ host: host.url, name: 'squeeze', memoryMib: 512, processes: [child.pid!], workerThreads: 0, lock: false, floorMib: 64 });
      const conn = await poll(() => host.latest, 'a connection');
      await poll(() => host.received(conn, 'hello')[0], 'Hello');
      // The stub never pings: a long heartbeat keeps this one session however slow the machine.
      host.welcome(conn, { targetMib: 300, generation: 1, statsIntervalMs: 20, heartbeatIntervalMs: 600_000 });
      await agent.ready();
      expect(await agent.settled({ targetMib: 300 })).toMatchObject({ actualMib: 300, state: 'steady' });
      const childMib = procMib(child.pid!, 'VmRSS');
      const seen = host.received(conn, 'memoryStats').length;
      const stats = await poll(() => host.received(conn, 'memoryStats')[seen], 'statistics after the inflate');
      const availableMib = stats.availableBytes / MIB;
      expect(availableMib).toBeGreaterThan(512 - childMib - 300 - 6);
      expect(availableMib).toBeLessThan(512 - childMib - 300 + 6);
    } finally {
      await agent?.close();
      await host.close();
    }
  });
});
