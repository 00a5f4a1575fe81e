// The hand-off's release path against the kernel: a balloon in a child
// process inside a memory cgroup of its own releases what it pinned, and the
// cgroup's usage file (the kernel's charge, not RSS bookkeeping) drops with
// it while the balloon still reports its size.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BalloonStatus } from '@memballoon/protocol';
import { procMib, startBalloonChild, type BalloonChild } from '../test-support/child.js';
import { poll } from '../test-support/poll.js';
import { availableUnderHandOffBytes } from './floor.js';

const MIB = 1024 * 1024;
const V1_MEMORY = '/sys/fs/cgroup/memory';
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root to make a memory cgroup'
    : !existsSync(join(V1_MEMORY, 'memory.usage_in_bytes'))
      ? `no cgroup v1 memory controller at ${V1_MEMORY}`
      : '';
if (skipReason) console.log(`skipping the hand-off kernel test: ${skipReason}`);

const usageMib = (dir: string): number => Number(readFileSync(join(dir, 'memory.usage_in_bytes'), 'utf8')) / MIB;

describe.skipIf(skipReason !== '')('hand-off release path against the kernel (child in a v1 memory cgroup)', () => {
  const dir = join(V1_MEMORY, `memballoon-test-handoff-${process.pid}-${Date.now()}`);
  let kid: BalloonChild;

  beforeAll(async () => {
    mkdirSync(dir);
    kid = await startBalloonChild();
    // v1 charges pages to the cgroup a task is in when it faults them: the
    // balloon inflated from here on is charged to ours.
    writeFileSync(join(dir, 'cgroup.procs'), String(kid.pid));
  });

  afterAll(async () => {
    await kid?.stop();
    // The child is gone, so the cgroup is empty and can go too.
    await poll(() => {
      try {
        rmdirSync(dir);
        return true;
      } catch {
        return false;
      }
    }, `removing ${dir}`);
  });

  it('releases a pinned balloon: the cgroup uncharges it and VmLck drops while actual stays; a deflate then does no page work', async () => {
    const balloonMib = 128;
    const before = usageMib(dir);
    const inflated = await kid.ask<{ status: BalloonStatus }>({ op: 'target', targetMib: balloonMib }, 'target');
    expect(inflated.status.actualMib).toBe(balloonMib);
    const pinnedUsage = usageMib(dir);
    // The balloon is charged to our cgroup (this is what the hand-off must take back).
    expect(pinnedUsage - before).toBeGreaterThan(balloonMib - 8);
    const locked = inflated.status.lock === 'locked';
    if (locked) expect(procMib(kid.pid, 'VmLck')).toBeGreaterThanOrEqual(balloonMib);

    const handed = await kid.ask<{ status: BalloonStatus; problems: string[] }>({ op: 'handOff', handedOffMib: balloonMib }, 'handOff');
    expect(handed.problems).toEqual([]);
    expect(handed.status).toMatchObject({ actualMib: balloonMib, handedOffMib: balloonMib, lockedMib: 0 });
    // SharedArrayBuffer pages are private anonymous memory: MADV_DONTNEED
    // uncharges them at once (a shared mapping would stay charged).
    const releasedMib = pinnedUsage - usageMib(dir);
    expect(releasedMib).toBeGreaterThan(balloonMib - 8);
    expect(procMib(kid.pid, 'VmLck')).toBeLessThan(1);

    // Idempotent: asking again for what is handed off already changes nothing.
    const again = await kid.ask<{ status: BalloonStatus }>({ op: 'handOff', handedOffMib: balloonMib }, 'handOff');
    expect(again.status).toMatchObject({ actualMib: balloonMib, handedOffMib: balloonMib });

    // Deflating handed-off MiB only counts them down: nothing is charged again.
    const usageBeforeDeflate = usageMib(dir);
    const deflated = await kid.ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 0 }, 'target');
    expect(deflated.status.actualMib).toBe(0);
    expect(deflated.status.handedOffMib ?? 0).toBe(0);
    expect(usageMib(dir) - usageBeforeDeflate).toBeLessThan(8);
  });

  it('hands off while the balloon inflates (the host does, as the agent pins): the released chunks leave the cgroup, the rest is pinned and intact', async () => {
    const before = usageMib(dir);
    const r = await kid.ask<{ status: BalloonStatus; whileInflatingMib: number; problems: string[] }>(
      { op: 'targetHandingOff', targetMib: 192 },
      'targetHandingOff',
    );
    expect(r.problems).toEqual([]);
    expect(r.status).toMatchObject({ targetMib: 192, actualMib: 192, state: 'steady' });
    const handedMib = r.status.handedOffMib ?? 0;
    // Progress comes every 64 MiB at least: the first reports came while it still inflated.
    expect(r.whileInflatingMib).toBeGreaterThan(0);
    expect(handedMib).toBeGreaterThanOrEqual(r.whileInflatingMib);
    const pinnedMib = 192 - handedMib;
    if (r.status.lock === 'locked') expect(r.status.lockedMib).toBe(pinnedMib);
    // The kernel holds the pinned part only (within the agent's own noise).
    expect(usageMib(dir) - before).toBeGreaterThan(pinnedMib - 8);
    expect(usageMib(dir) - before).toBeLessThan(pinnedMib + 24);
    if (r.status.lock === 'locked') expect(procMib(kid.pid, 'VmLck')).toBeLessThan(pinnedMib + 1);
    // The chunks still held were never touched by the release: every page keeps its word.
    expect(await kid.ask<{ pages?: number; error?: string }>({ op: 'verify' }, 'verify')).toMatchObject({ pages: expect.any(Number) });
    // Deflate: the handed-off part first (no page work), then the pinned chunks.
    const down = await kid.ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 0 }, 'target');
    expect(down.status).toMatchObject({ actualMib: 0, lockedMib: 0 });
    expect(down.status.handedOffMib ?? 0).toBe(0);
    expect(usageMib(dir) - before).toBeLessThan(24);
  });

  it('hands off part of a balloon, newest chunks first, never more than it holds', async () => {
    await kid.ask({ op: 'target', targetMib: 96 }, 'target');
    const pinnedUsage = usageMib(dir);
    const part = await kid.ask<{ status: BalloonStatus }>({ op: 'handOff', handedOffMib: 32 }, 'handOff');
    expect(part.status).toMatchObject({ actualMib: 96, handedOffMib: 32 });
    if (part.status.lock === 'locked') expect(part.status.lockedMib).toBe(64);
    expect(pinnedUsage - usageMib(dir)).toBeGreaterThan(32 - 6);
    expect(pinnedUsage - usageMib(dir)).toBeLessThan(64);
    // More than the balloon holds: all of it, no more.
    const all = await kid.ask<{ status: BalloonStatus }>({ op: 'handOff', handedOffMib: 500 }, 'handOff');
    expect(all.status).toMatchObject({ actualMib: 96, handedOffMib: 96, lockedMib: 0 });
    // A deflate to 40 takes the handed-off MiB first: the rest stays handed off.
    const down = await kid.ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 40 }, 'target');
    expect(down.status).toMatchObject({ actualMib: 40, handedOffMib: 40 });
    // Inflating again pins new chunks on top of the handed-off part.
    const up = await kid.ask<{ status: BalloonStatus }>({ op: 'target', targetMib: 56 }, 'target');
    expect(up.status).toMatchObject({ actualMib: 56, handedOffMib: 40 });
    if (up.status.lock === 'locked') expect(up.status.lockedMib).toBe(16);
    // Those new chunks may reuse the handed-off chunks' memory: every page holds its own word again.
    expect(await kid.ask<{ pages?: number; error?: string }>({ op: 'verify' }, 'verify')).toMatchObject({ pages: 16 * 256 });
    await kid.ask({ op: 'target', targetMib: 0 }, 'target');
  });
});

describe('availability after a hand-off (floor checks and the statistics sent to the host)', () => {
  it('a process domain (no limit seen) loses what is handed off; a cgroup domain whose limit already fell is not counted twice; the limit lagging a deflate counts as given back', () => {
    // Process domain of 1024 MiB: 600 available by RSS, 300 handed off.
    expect(availableUnderHandOffBytes({ totalBytes: 1024 * MIB, availableBytes: 600 * MIB }, 1024, 300)).toBe(300 * MIB);
    // Cgroup domain: the limit is 724 MiB already; 300 available under it.
    expect(availableUnderHandOffBytes({ totalBytes: 724 * MIB, availableBytes: 300 * MIB }, 1024, 300)).toBe(300 * MIB);
    // The agent deflated 100 handed-off MiB; the host has not raised the limit yet.
    expect(availableUnderHandOffBytes({ totalBytes: 724 * MIB, availableBytes: 300 * MIB }, 1024, 200)).toBe(400 * MIB);
    expect(availableUnderHandOffBytes({ totalBytes: 1024 * MIB, availableBytes: 100 * MIB }, 1024, 300)).toBe(0);
    expect(availableUnderHandOffBytes({ totalBytes: 1024 * MIB, availableBytes: 100 * MIB }, 1024, 0)).toBe(100 * MIB);
    // The moment between the host lowering the limit for the first batch and the agent's release: not pressure.
    expect(availableUnderHandOffBytes({ totalBytes: 824 * MIB, availableBytes: 100 * MIB }, 1024, 0)).toBe(300 * MIB);
  });
});
