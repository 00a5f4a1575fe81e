// End to end, issue 7: the automatic balloon policy with real processes. A
// host with a small pool and a short policy interval; two guests in auto
// mode. One agent wraps a workload that grows until its guest is under
// pressure; within a deadline the host deflates that guest's balloon, inflates
// the idle guest's (what the kernel pins for its agent grows: VmLck read from
// /proc, not from the host), and the workload completes without being killed.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { ctl, ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir, type Started, type StartedHost } from './support/host.js';
import { balloonGrowthMib, balloonShare, isAlive, procMemory, vmRssMib } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/grow-memory.mjs', import.meta.url));

// Sizes: two guests of 512 MiB. The busy one starts with a 200 MiB balloon
// (its default), the idle one with none: they hold 312 + 512 MiB. The pool
// leaves 40 MiB free, above a 32 MiB safety margin, so nothing moves until the
// workload grows: then only 8 MiB can be granted from free quota, and the rest
// of what the busy guest needs must be reclaimed from the idle guest.
const GUEST_MIB = 512;
const BUSY_DEFAULT_BALLOON_MIB = 200;
const MARGIN_MIB = 32;
const POOL_SIZE_MIB = GUEST_MIB - BUSY_DEFAULT_BALLOON_MIB + GUEST_MIB + MARGIN_MIB + 8;
// The busy guest's agent (~70 MiB with its balloon workers), the workload's
// node (~45 MiB) and its 160 MiB leave ~40 MiB available under a 200 MiB
// balloon: well below the 20 % buffer (102 MiB), above the agent's own floor.
const WORKLOAD_MIB = 160;
const BUFFER_PERCENT = 20;

let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;

beforeAll(async () => {
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: POOL_SIZE_MIB, extra: ['--policy-interval-ms', '200', '--policy-margin-mib', String(MARGIN_MIB)] });
});
afterAll(async () => {
  await cleanUp(stopAll, () => data.remove());
});

const vm = (name: string, url = host.url) => ctlJson<VmView>(url, 'showvminfo', name);

async function ok(...args: string[]): Promise<void> {
  await okOn(host.url, ...args);
}

async function okOn(url: string, ...args: string[]): Promise<void> {
  const r = await ctl(url, ...args);
  if (r.code !== 0) throw new Error(`balloonctl ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
}

/** The processes of a process tree: the agent and its wrapped workload (from /proc). */
function treeRssMib(pids: readonly number[]): number {
  return pids.reduce((s, pid) => s + vmRssMib(pid), 0);
}

describe('automatic balloon policy, end to end', () => {
  it('moves memory to the guest under pressure: deflates its balloon, inflates the idle one, the workload completes', async () => {
    const goFile = join(data.dir, 'go');
    await ok('createvm', '--name', 'busy', '--memory', String(GUEST_MIB));
    await ok('createvm', '--name', 'idle', '--memory', String(GUEST_MIB));
    await ok('modifyvm', 'busy', '--guestmemoryballoon', String(BUSY_DEFAULT_BALLOON_MIB));

    // The busy guest: its agent wraps the workload, which waits for the go-file.
    const busy = spawnAgent({
      url: host.url,
      name: 'busy',
      memoryMib: GUEST_MIB,
      // The agent's own safety net (deflating by itself) stays low: this
      // test is about the host's policy acting first.
      floorMib: 16,
      extra: ['--', process.execPath, FIXTURE, '--target-mib', String(WORKLOAD_MIB), '--step-mib', '2', '--step-interval-ms', '100', '--go-file', goFile],
    });
    const workloadPid = Number(await waitFor(() => /^ready pid=(\d+)$/m.exec(busy.output())?.[1], { what: 'the workload to start', timeoutMs: 20_000 }));
    await waitFor(async () => (await vm('busy')).balloon?.actualMib === BUSY_DEFAULT_BALLOON_MIB, {
      what: "the busy guest's default balloon",
      timeoutMs: 30_000,
    });
    const idle: Started = spawnAgent({ url: host.url, name: 'idle', memoryMib: GUEST_MIB });
    await waitFor(async () => (await vm('idle')).state === 'running', { what: 'the idle guest to run', timeoutMs: 30_000 });

    // Auto mode while running: policy settings steer, they do not resize.
    await ok('modifyvm', 'busy', '--balloon-policy', 'auto', '--memory-buffer', String(BUFFER_PERCENT), '--memory-weight', '100');
    await ok('modifyvm', 'idle', '--balloon-policy', 'auto', '--memory-min', '128', '--balloon-max', '384');
    expect(await vm('idle')).toMatchObject({
      state: 'running',
      balloonPolicy: 'auto',
      memoryMinMib: 128,
      balloonMaxMib: 384,
      memoryWeight: 100,
      memoryBufferPercent: 20,
    });
    expect(await vm('busy')).toMatchObject({
      state: 'running',
      balloonPolicy: 'auto',
      memoryMinMib: 0,
      balloonMaxMib: null,
      memoryBufferPercent: BUFFER_PERCENT,
    });
    // Bad settings are refused with a clear line, also while running.
    const badWeight = await ctl(host.url, 'modifyvm', 'idle', '--memory-weight', '0');
    expect(badWeight.code).not.toBe(0);
    expect(badWeight.stderr.trim()).toBe('balloonctl: error: memoryWeight 0 is out of range (1 to 10000)');
    const badMax = await ctl(host.url, 'modifyvm', 'idle', '--balloon-max', '461');
    expect(badMax.stderr).toMatch(/balloonMaxMib 461 MiB is out of range \(0 to 460 MiB, below 90 % of the VM memory/);

    // Both guests report stats; with the workload idle nothing is under
    // pressure and the margin is intact, so the policy leaves them be.
    const busyBefore = await waitFor(
      async () => {
        const v = await vm('busy');
        return v.stats !== undefined && v.stats.availableMib > (GUEST_MIB * BUFFER_PERCENT) / 100 ? v : undefined;
      },
      { what: 'the busy guest to report stats above its buffer', timeoutMs: 20_000 },
    );
    const idleBefore = await waitFor(
      async () => {
        const v = await vm('idle');
        return v.stats !== undefined ? v : undefined;
      },
      { what: 'the idle guest to report stats', timeoutMs: 20_000 },
    );
    expect(busyBefore.balloon).toMatchObject({ targetMib: BUSY_DEFAULT_BALLOON_MIB, actualMib: BUSY_DEFAULT_BALLOON_MIB });
    expect(idleBefore.balloon).toMatchObject({ targetMib: 0, actualMib: 0 });
    const idleMemBefore = procMemory(idle.pid);
    const busyAgentMemBefore = procMemory(busy.pid);
    const poolBefore = (await ctlJson<HostView>(host.url, 'showhostinfo')).pool;
    expect(poolBefore).toMatchObject({ sizeMib: POOL_SIZE_MIB, heldMib: GUEST_MIB - BUSY_DEFAULT_BALLOON_MIB + GUEST_MIB, freeMib: MARGIN_MIB + 8 });

    // Go: the workload grows by 2 MiB every 100 ms.
    const goAtMs = Date.now();
    writeFileSync(goFile, '');

    // The workload completes: it holds all it asked for and was not killed.
    await waitFor(() => /^done \d+ MiB/m.test(busy.output()), { what: 'the workload to print done', timeoutMs: 60_000 });
    const doneAtMs = Date.now();
    expect(isAlive(workloadPid)).toBe(true);
    expect(isAlive(busy.pid)).toBe(true);
    expect(vmRssMib(workloadPid)).toBeGreaterThan(WORKLOAD_MIB);

    // Within a deadline the pressure is relieved: the busy guest has its
    // buffer of available memory back, by a balloon the host deflated.
    const busyAfter = await waitFor(
      async () => {
        const v = await vm('busy');
        return v.stats !== undefined &&
          v.stats.receivedAtMs > doneAtMs &&
          v.stats.availableMib >= (GUEST_MIB * BUFFER_PERCENT) / 100 &&
          v.balloon!.actualMib <= v.balloon!.targetMib
          ? v
          : undefined;
      },
      { what: 'the busy guest to be out of pressure', timeoutMs: 60_000 },
    );
    const relievedAtMs = Date.now();
    expect(busyAfter.balloon!.targetMib).toBeLessThan(BUSY_DEFAULT_BALLOON_MIB);
    expect(busyAfter.balloon!.actualMib).toBeLessThan(BUSY_DEFAULT_BALLOON_MIB);
    // The deflate is real: what the kernel pins for the busy agent (VmLck; VmRSS where it cannot pin) fell with its balloon.
    const busyPinned = busyAfter.balloon!.lock === 'locked';
    expect(-balloonGrowthMib(busy.pid, busyAgentMemBefore, busyPinned)).toBeGreaterThan(
      (BUSY_DEFAULT_BALLOON_MIB - busyAfter.balloon!.actualMib) * balloonShare(busyPinned),
    );
    // What the guest's tree really holds fits in its memory.
    expect(treeRssMib([busy.pid, workloadPid])).toBeLessThan(GUEST_MIB);

    // The idle guest paid for it: the host inflated its balloon and what the
    // kernel pins for its agent grew by it. (Not a VmRSS delta: the fresh
    // agent frees its start-up garbage meanwhile, which once hid 20 MiB of an
    // 86 MiB balloon.)
    const idleAfter = await waitFor(
      async () => {
        const v = await vm('idle');
        return v.balloon!.actualMib > 0 && v.balloon!.actualMib === v.balloon!.targetMib ? v : undefined;
      },
      { what: "the idle guest's balloon to grow", timeoutMs: 30_000 },
    );
    const idleGrowthMib = idleAfter.balloon!.actualMib;
    expect(idleGrowthMib).toBeGreaterThan(0);
    expect(idleAfter.balloon!.targetMib).toBeLessThanOrEqual(384);
    const idlePinned = idleAfter.balloon!.lock === 'locked';
    const idleKernelGrowthMib = balloonGrowthMib(idle.pid, idleMemBefore, idlePinned);
    expect(idleKernelGrowthMib).toBeGreaterThan(idleGrowthMib * balloonShare(idlePinned));

    // The pool's invariant held throughout what we saw, and memory moved.
    const poolAfter = (await ctlJson<HostView>(host.url, 'showhostinfo')).pool;
    expect(poolAfter.heldMib).toBeLessThanOrEqual(poolAfter.sizeMib);
    expect(poolAfter.heldMib + poolAfter.freeMib).toBe(poolAfter.sizeMib);

    const hostLog = host.output();
    const moves = hostLog.split('\n').filter((l) => l.includes('"msg":"policy moved a balloon"'));
    expect(moves.some((l) => l.includes('"vm":"busy"') && l.includes('"reason":"pressure"'))).toBe(true);
    expect(moves.some((l) => l.includes('"vm":"idle"') && /"reason":"(reclaim|margin)"/.test(l))).toBe(true);
    const selfDeflated = /guest deflated on its own/.test(hostLog);
    // Figures for the record (no timing assertions: machines differ).
    console.log(
      JSON.stringify({
        workloadDoneMs: doneAtMs - goAtMs,
        relievedMs: relievedAtMs - goAtMs,
        busy: { before: busyBefore.balloon, after: busyAfter.balloon, availableMib: busyAfter.stats?.availableMib },
        idle: { before: idleBefore.balloon, after: idleAfter.balloon, kernelGrowthMib: Math.round(idleKernelGrowthMib), pinned: idlePinned },
        pool: { before: poolBefore, after: poolAfter },
        policyMoves: moves.length,
        busyDeflatedOnItsOwn: selfDeflated,
      }),
    );
  }, 180_000);

  it('pays back a pool that a guest overcommitted by deflating on its own, by inflating the other auto guest', async () => {
    // Its own host: the pool's free quota is exactly the margin, so the
    // policy cannot grant anything before it has reclaimed, and the busy
    // guest's agent (floor 64 MiB, checked every 250 ms) gives its balloon
    // back by itself when the workload takes 200 MiB at once.
    const dir = join(data.dir, 'overcommit');
    const pool = GUEST_MIB - BUSY_DEFAULT_BALLOON_MIB + GUEST_MIB + MARGIN_MIB;
    const h = await spawnHost({ dataDir: dir, poolSizeMib: pool, extra: ['--policy-interval-ms', '200', '--policy-margin-mib', String(MARGIN_MIB)] });
    const goFile = join(dir, 'go');
    await okOn(h.url, 'createvm', '--name', 'busy2', '--memory', String(GUEST_MIB));
    await okOn(h.url, 'createvm', '--name', 'idle2', '--memory', String(GUEST_MIB));
    await okOn(h.url, 'modifyvm', 'busy2', '--guestmemoryballoon', String(BUSY_DEFAULT_BALLOON_MIB), '--balloon-policy', 'auto');
    await okOn(h.url, 'modifyvm', 'idle2', '--balloon-policy', 'auto');
    const busy = spawnAgent({
      url: h.url,
      name: 'busy2',
      memoryMib: GUEST_MIB,
      extra: ['--', process.execPath, FIXTURE, '--target-mib', '200', '--step-mib', '50', '--step-interval-ms', '0', '--go-file', goFile],
    });
    await waitFor(async () => (await vm('busy2', h.url)).balloon?.actualMib === BUSY_DEFAULT_BALLOON_MIB, {
      what: "the busy guest's default balloon",
      timeoutMs: 30_000,
    });
    const idle = spawnAgent({ url: h.url, name: 'idle2', memoryMib: GUEST_MIB });
    await waitFor(async () => (await vm('idle2', h.url)).stats !== undefined && (await vm('busy2', h.url)).stats !== undefined, {
      what: 'both guests to report stats',
      timeoutMs: 30_000,
    });
    expect((await vm('idle2', h.url)).balloon).toMatchObject({ targetMib: 0, actualMib: 0 });
    const idleMemBefore = procMemory(idle.pid);
    const goAtMs = Date.now();
    writeFileSync(goFile, '');

    // The agent deflates by itself: the pool holds more than its size, and the host says so.
    await waitFor(() => /the guest deflated on its own: the pool is overcommitted/.test(h.output()), {
      what: 'the host to log the overcommit',
      timeoutMs: 30_000,
    });
    const overcommitMib = Math.max(
      ...h
        .output()
        .split('\n')
        .filter((l) => l.includes('the pool is overcommitted'))
        .map((l) => Number(/"overcommitMib":(\d+)/.exec(l)?.[1] ?? 0)),
    );
    expect(overcommitMib).toBeGreaterThan(0);
    const short = await vm('busy2', h.url);
    expect(short.balloon!.actualMib).toBeLessThan(BUSY_DEFAULT_BALLOON_MIB);

    // Within a deadline the policy pays it back from the idle guest: the pool
    // holds no more than its size again, and what the kernel pins for the idle agent grew.
    const paid = await waitFor(
      async () => {
        const info = await ctlJson<HostView>(h.url, 'showhostinfo');
        return info.pool.heldMib <= info.pool.sizeMib ? info.pool : undefined;
      },
      { what: 'the overcommit to be paid back', timeoutMs: 60_000 },
    );
    const paidAtMs = Date.now();
    const idleAfter = await waitFor(
      async () => {
        const v = await vm('idle2', h.url);
        return v.balloon!.actualMib > 0 && v.balloon!.actualMib === v.balloon!.targetMib ? v : undefined;
      },
      { what: "the idle guest's balloon to settle", timeoutMs: 30_000 },
    );
    expect(idleAfter.balloon!.actualMib).toBeGreaterThanOrEqual(overcommitMib);
    const idlePinned = idleAfter.balloon!.lock === 'locked';
    expect(balloonGrowthMib(idle.pid, idleMemBefore, idlePinned)).toBeGreaterThan(idleAfter.balloon!.actualMib * balloonShare(idlePinned));
    await waitFor(() => /^done \d+ MiB/m.test(busy.output()), { what: 'the workload to print done', timeoutMs: 30_000 });
    expect(isAlive(busy.pid)).toBe(true);
    console.log(JSON.stringify({ overcommitMib, paidBackMs: paidAtMs - goAtMs, pool: paid, busy: short.balloon, idle: idleAfter.balloon }));
  }, 180_000);
});
