import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BalloonStatus } from '@memballoon/protocol';
import { BalloonEngine } from './engine.js';
import type { DomainSource } from '../domain/source.js';
import { poll } from '../test-support/poll.js';
import { askChild, lockedResidentMib, procMib, startBalloonChild, within, type BalloonChild } from '../test-support/child.js';

const MIB = 1024 * 1024;

describe('balloon engine against the kernel (child process)', () => {
  let kid: BalloonChild;
  const ask = <T>(msg: object, op: string): Promise<T> => kid.ask<T>(msg, op);

  beforeAll(async () => {
    kid = await startBalloonChild();
  });

  afterAll(() => kid.stop());

  it('inflates 64 MiB: VmRSS grows by 64 MiB, VmLck shows the lock, every page is resident and pinned, pages hold non-zero data; deflate gives it back', async () => {
    const pid = kid.pid;
    const rssBefore = procMib(pid, 'VmRSS');
    const { status } = await ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 64 }, 'target');
    expect(status.actualMib).toBe(64);
    const grownMib = procMib(pid, 'VmRSS') - rssBefore;
    // Less what the child's own heap gave back meanwhile (V8's memory reducer
    // runs on its own clock: 6 MiB seen with two suites running); the
    // balloon's pages themselves are counted exactly below (smaps).
    expect(grownMib).toBeGreaterThan(64 - 16);
    expect(grownMib).toBeLessThan(64 + 6);
    if (status.lock === 'locked') {
      expect(procMib(pid, 'VmLck')).toBeGreaterThanOrEqual(64);
      // The async calls' chunks are marked locked before they are faulted in
      // (MLOCK_ONFAULT): the kernel must show the pages themselves pinned,
      // not only the ranges marked.
      expect(lockedResidentMib(pid)).toBeGreaterThanOrEqual(64);
      expect(status.lockedMib).toBe(64);
    } else {
      // Unpinned where mlock is refused, and says why.
      expect(['not_permitted', 'unsupported']).toContain(status.lock);
      expect(status.detail).not.toBe('');
    }
    const verify = await ask<{ pages?: number; error?: string }>({ op: 'verify' }, 'verify');
    expect(verify.error).toBeUndefined();
    expect(verify.pages).toBe((64 * MIB) / 4096);

    const back = await ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 0 }, 'target');
    expect(back.status.actualMib).toBe(0);
    // RSS drops as soon as the deflate completes (madvise), within a few MiB.
    const rssAfter = procMib(pid, 'VmRSS');
    expect(rssAfter - rssBefore).toBeLessThan(4);
    expect(procMib(pid, 'VmLck')).toBe(0);
    expect(lockedResidentMib(pid)).toBe(0);
  });

  it('gives memory back on every cycle, not only the first', async () => {
    const pid = kid.pid;
    const rssBefore = procMib(pid, 'VmRSS');
    for (let i = 0; i < 3; i++) {
      const { status } = await ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 48 }, 'target');
      expect(status.actualMib).toBe(48);
      // Pinned: the balloon's own pages, resident and locked, as smaps counts
      // them (a VmRSS delta also moves with the child's heap: seen −16 MiB
      // with two suites running). Unpinned: VmRSS is the only figure.
      if (status.lock === 'locked') expect(lockedResidentMib(pid)).toBeGreaterThanOrEqual(48);
      else expect(procMib(pid, 'VmRSS') - rssBefore).toBeGreaterThan(44);
      await ask({ op: 'target', targetMib: 0 }, 'target');
      expect(lockedResidentMib(pid)).toBe(0);
      expect(procMib(pid, 'VmRSS') - rssBefore).toBeLessThan(4);
    }
  });
});

describe('a fresh engine against the kernel (issue 12.5)', () => {
  it('its first inflate grows VmRSS by the balloon alone: the threads started with the engine, and nothing of them stays after the deflate', async () => {
    // Before, worker threads started inside the first inflate: 64 MiB grew
    // VmRSS by ~98 MiB, and ~35 MiB stayed after the deflate.
    const kid = await startBalloonChild(['fresh']);
    try {
      // No thread of the engine's own (each worker thread was an isolate,
      // ~8.5 MiB of the idle agent): the fault-in runs on libuv's pool,
      // which Node had started already.
      const threads = await kid.ask<{ before: number; now: number }>({ op: 'threads' }, 'threads');
      expect(threads.now).toBe(threads.before);
      const rssBefore = procMib(kid.pid, 'VmRSS');
      const { status } = await kid.ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 64 }, 'target');
      expect(status.actualMib).toBe(64);
      const grownMib = procMib(kid.pid, 'VmRSS') - rssBefore;
      expect(grownMib).toBeGreaterThan(64 - 4);
      expect(grownMib).toBeLessThan(64 + 6);
      await kid.ask({ op: 'target', targetMib: 0 }, 'target');
      expect(procMib(kid.pid, 'VmRSS') - rssBefore).toBeLessThan(6);
      // Nor does an inflate start any.
      expect((await kid.ask<{ now: number }>({ op: 'threads' }, 'threads')).now).toBe(threads.before);
    } finally {
      await kid.stop();
    }
  });
});

describe('balloon engine where mlock2 is missing (each fault-in call mlocks its chunk, child process)', () => {
  let kid: BalloonChild;
  beforeAll(async () => {
    kid = await startBalloonChild(['mlock']);
  });
  afterAll(() => kid.stop());

  it('pins and commits every page all the same, and gives it all back', async () => {
    const pid = kid.pid;
    const rssBefore = procMib(pid, 'VmRSS');
    const { status } = await kid.ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 48 }, 'target');
    expect(status.actualMib).toBe(48);
    // A fresh child's own memory still moves by a few MiB (its start-up
    // garbage is collected meanwhile: 43.5 seen once under load); the exact
    // proof is the pinned resident pages below.
    expect(procMib(pid, 'VmRSS') - rssBefore).toBeGreaterThan(48 - 8);
    if (status.lock === 'locked') {
      expect(status.lockedMib).toBe(48);
      expect(procMib(pid, 'VmLck')).toBe(48);
      expect(lockedResidentMib(pid)).toBeGreaterThanOrEqual(48);
    }
    const verify = await kid.ask<{ pages?: number; error?: string }>({ op: 'verify' }, 'verify');
    expect(verify.pages).toBe((48 * MIB) / 4096);
    await kid.ask({ op: 'target', targetMib: 0 }, 'target');
    expect(procMib(pid, 'VmRSS') - rssBefore).toBeLessThan(4);
    expect(procMib(pid, 'VmLck')).toBe(0);
  });
});

// Without CAP_IPC_LOCK and with a tiny RLIMIT_MEMLOCK, mlock is refused:
// possible to arrange only where prlimit and setpriv exist and we may drop
// the capability (root).
const canDropLock = process.getuid?.() === 0 && spawnSync('prlimit', ['--version']).status === 0 && spawnSync('setpriv', ['--version']).status === 0;

describe.skipIf(!canDropLock)('balloon engine where mlock is not permitted (child without CAP_IPC_LOCK)', () => {
  it('inflates unpinned, says why, and still gives the memory back', async () => {
    const fixture = fileURLToPath(new URL('./rss-child.fixture.ts', import.meta.url));
    const child = spawn(
      'prlimit',
      ['--memlock=65536:65536', 'setpriv', '--bounding-set=-ipc_lock', '--inh-caps=-ipc_lock', '--', process.execPath, '--import', 'tsx', fixture],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    try {
      const [ready] = (await within(once(child, 'message'), 'the child to start')) as [{ op: string }];
      expect(ready.op).toBe('ready');
      const pid = child.pid!; // prlimit and setpriv exec: same pid as the node child
      const before = procMib(pid, 'VmRSS');
      const { status } = await askChild<{ status: BalloonStatus }>(child, { op: 'target', targetMib: 32 }, 'target');
      expect(status).toMatchObject({ actualMib: 32, lockedMib: 0, lock: 'not_permitted' });
      expect(status.detail).toMatch(/not pinned/);
      expect(procMib(pid, 'VmLck')).toBe(0);
      // Unpinned, VmRSS is the only figure: less what the child's own heap may give back meanwhile.
      expect(procMib(pid, 'VmRSS') - before).toBeGreaterThan(32 - 12);
      await askChild(child, { op: 'target', targetMib: 0 }, 'target');
      expect(procMib(pid, 'VmRSS') - before).toBeLessThan(4);
      await askChild(child, { op: 'close' }, 'close');
    } finally {
      if (child.exitCode === null) child.kill();
    }
  });
});

describe('balloon engine behaviour', () => {
  it('a new target during an inflate takes effect at the next chunk (inflate → smaller)', async () => {
    const engine = new BalloonEngine({ workerThreads: 1, lock: false });
    let maxSeenMib = 0;
    engine.on('chunk', (c) => (maxSeenMib = Math.max(maxSeenMib, c.actualMib)));
    engine.once('chunk', () => setImmediate(() => engine.setTarget(8)));
    engine.setTarget(96);
    const status = await engine.settled();
    expect(status.actualMib).toBe(8);
    expect(status.targetMib).toBe(8);
    expect(status.state).toBe('steady');
    expect(maxSeenMib).toBeLessThan(96);
    expect(engine.verifyPages()).toBe((8 * MIB) / 4096);
    await engine.close();
  });

  it('a new target during a deflate takes effect at the next step (deflate → larger)', async () => {
    const engine = new BalloonEngine({ workerThreads: 1, lock: false, deflateStepMib: 1, progressEveryMib: 1 });
    engine.setTarget(48);
    await engine.settled();
    let minSeenMib = 48;
    let preempted = false;
    engine.on('progress', (s) => {
      minSeenMib = Math.min(minSeenMib, s.actualMib);
      if (!preempted && s.state === 'deflating') {
        preempted = true;
        setImmediate(() => engine.setTarget(40));
      }
    });
    engine.setTarget(0);
    const status = await engine.settled();
    expect(status.actualMib).toBe(40);
    expect(minSeenMib).toBeGreaterThan(0);
    await engine.close();
  });

  it('ignores a target of an older generation (latest wins)', async () => {
    const engine = new BalloonEngine({ workerThreads: 0, lock: false });
    expect(engine.setTarget(4, 5)).toBe(true);
    expect(engine.setTarget(16, 3)).toBe(false);
    expect((await engine.settled()).actualMib).toBe(4);
    await engine.close();
  });

  it('refuses a target above the guest memory with a named error and keeps its balloon', async () => {
    const engine = new BalloonEngine({ workerThreads: 0, lock: false, maxTargetMib: 128 });
    engine.setTarget(4);
    await engine.settled();
    expect(() => engine.setTarget(129)).toThrowError(expect.objectContaining({ code: 'target_out_of_range' }));
    expect(() => engine.setTarget(-1)).toThrowError(expect.objectContaining({ code: 'target_out_of_range' }));
    expect(engine.status.actualMib).toBe(4);
    expect(engine.verifyPages()).toBe((4 * MIB) / 4096);
    await engine.close();
  });

  it('stops short at the floor, and deflates by itself under guest pressure', async () => {
    // A fake guest of 1 GiB whose free memory is whatever the test says,
    // minus what the balloon holds (as a real domain would show it).
    let workloadFreeMib = 200;
    let engine: BalloonEngine | null = null;
    const domain: DomainSource = {
      kind: 'machine',
      totalMib: 1024,
      availability: () => ({ totalBytes: 1024 * MIB, availableBytes: Math.max(0, workloadFreeMib - (engine?.status.actualMib ?? 0)) * MIB }),
      stats: () => {
        throw new Error('not used');
      },
    };
    engine = new BalloonEngine({ workerThreads: 0, lock: false, domain, floorMib: 64, pressureCheckIntervalMs: 10 });
    const shortfalls: BalloonStatus[] = [];
    engine.on('shortfall', (s) => shortfalls.push(s));
    engine.setTarget(500);
    const status = await engine.settled();
    expect(status.state).toBe('short');
    expect(status.reason).toBe('guest_floor');
    expect(status.actualMib).toBe(200 - 64);
    expect(status.targetMib).toBe(500);

    // The workload grows: free memory falls below the floor.
    workloadFreeMib = 170;
    const e = engine;
    await poll(() => shortfalls.find((s) => s.reason === 'guest_pressure'), 'a guest_pressure shortfall');
    await e.settled();
    expect(e.status.reason).toBe('guest_pressure');
    expect(e.status.actualMib).toBeLessThanOrEqual(170 - 64);
    expect(170 - e.status.actualMib).toBeGreaterThanOrEqual(64);
    await e.close();
  });

  it('at the floor: a target within a few MiB of it is reached and kept, one past it ends guest_floor at the floor, and noise within the band moves neither (issue 12.4)', async () => {
    // A fake guest of 1 GiB; `noiseMib` is the agent's own memory moving
    // (heap, page cache), which lowers availability besides the balloon.
    let workloadFreeMib = 200;
    let reads = 0;
    let engine: BalloonEngine | null = null;
    const domain: DomainSource = {
      kind: 'machine',
      totalMib: 1024,
      availability: () => {
        reads++;
        return { totalBytes: 1024 * MIB, availableBytes: Math.max(0, workloadFreeMib - (engine?.status.actualMib ?? 0)) * MIB };
      },
      stats: () => {
        throw new Error('not used');
      },
    };
    engine = new BalloonEngine({ workerThreads: 0, lock: false, domain, floorMib: 64, pressureCheckIntervalMs: 5 });
    const e = engine;
    /** Lets the pressure check read the domain `n` more times (work counted, not time). */
    const checks = (n: number) => {
      const until = reads + n;
      return poll(() => reads >= until, `${n} pressure checks`);
    };

    // 2 MiB above the floor, then 3 MiB of noise: 1 MiB under it.
    e.setTarget(134);
    expect(await e.settled()).toMatchObject({ actualMib: 134, state: 'steady', reason: 'none' });
    workloadFreeMib = 197;
    await checks(5);
    expect(e.status).toMatchObject({ actualMib: 134, state: 'steady', reason: 'none' });

    // Past the floor: stops at it, and says so.
    workloadFreeMib = 200;
    e.setTarget(150);
    expect(await e.settled()).toMatchObject({ actualMib: 136, state: 'short', reason: 'guest_floor' });
    workloadFreeMib = 197;
    await checks(5);
    expect(e.status).toMatchObject({ actualMib: 136, state: 'short', reason: 'guest_floor' });

    // Real pressure (20 MiB under the floor): deflates back to the floor at once.
    workloadFreeMib = 180;
    await poll(() => e.status.reason === 'guest_pressure', 'a guest_pressure shortfall');
    const status = await e.settled();
    expect(status.actualMib).toBe(180 - 64);
    await e.close();
  });

  it('after a hand-off, pressure deflates handed-off MiB once (not again while the host raises the limit)', async () => {
    // A fake cgroup of 1 GiB: the host's limit drops by what it takes over,
    // usage is the workload plus the chunks still pinned.
    let workloadMib = 700;
    let limitMib = 1024;
    let readings = 0;
    let engine: BalloonEngine | null = null;
    const usageMib = () => workloadMib + (engine ? engine.status.actualMib - (engine.status.handedOffMib ?? 0) : 0);
    const domain: DomainSource = {
      kind: 'cgroup',
      totalMib: 1024,
      availability: () => {
        readings++;
        return { totalBytes: limitMib * MIB, availableBytes: Math.max(0, limitMib - usageMib()) * MIB };
      },
      stats: () => {
        throw new Error('not used');
      },
    };
    engine = new BalloonEngine({ workerThreads: 0, lock: false, domain, floorMib: 64, pressureCheckIntervalMs: 5 });
    engine.setTarget(200);
    expect((await engine.settled()).actualMib).toBe(200);
    // The host lowers the limit first, then the agent releases.
    limitMib -= 200;
    expect(engine.handOff(200)).toMatchObject({ actualMib: 200, handedOffMib: 200 });
    expect(limitMib - usageMib()).toBe(124);
    // The workload grows past the floor; the host is slow to raise the limit.
    workloadMib = 780;
    const e = engine;
    await poll(() => (e.status.handedOffMib ?? 0) < 200, 'a deflate under guest pressure');
    await e.settled();
    const after = readings;
    await poll(() => readings >= after + 20 && !e.moving, 'twenty more pressure checks');
    // 20 MiB were missing below the floor: exactly those came back, once.
    expect(e.status).toMatchObject({ actualMib: 180, handedOffMib: 180, reason: 'guest_pressure' });
    await e.close();
  });
});

describe('the first chunk of a target (in this process)', () => {
  /** Minor page faults of this process so far (/proc/self/stat field 10). */
  const minorFaults = (): number => Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[7]);

  it('is committed before the target comes: pinning it on the target faults (almost) none of its 256 pages', async () => {
    const engine = new BalloonEngine({ workerThreads: 0 });
    try {
      engine.setTarget(4);
      await engine.settled();
      // setTarget commits the first chunk synchronously, on this thread.
      const before = minorFaults();
      engine.setTarget(5);
      const faulted = minorFaults() - before;
      await engine.settled();
      expect(engine.status.actualMib).toBe(5);
      // Without the warm chunk: 256 faults (one per page) and more.
      expect(faulted).toBeLessThan(64);
      engine.setTarget(0);
      await engine.settled();
    } finally {
      await engine.close();
    }
  });
});
