// Overcommit end to end: a pool of 1000 MiB and three guests of 512 MiB. The
// third is admitted only after the other two have really inflated (VmLck),
// the pool never shows more held than its size, and kill -9 of an agent
// returns its holding. The agents keep the host's floor (64 MiB): the host
// reclaims from them only down to that floor plus a margin, so the pool
// leaves each guest room for its agent (about 100 MiB of Node) as well.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { apiGet, ctl, spawnAgent, spawnHost, stopAll, tempDataDir, type Started, type StartedHost } from './support/host.js';
import { balloonGrowthMib, balloonShare, procMemory } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const POOL_SIZE_MIB = 1000;
let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;
let watching = true;
let maxHeldMib = 0;
let watcher: Promise<void>;

beforeAll(async () => {
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: POOL_SIZE_MIB });
  for (const n of ['oc-a', 'oc-b', 'oc-c']) {
    expect((await ctl(host.url, 'createvm', '--name', n, '--memory', '512')).code).toBe(0);
    // What each guest keeps whatever the reclaim: room for the agent itself
    // (about 100 MiB of Node) above its floor, so that no balloon the host
    // asks for pushes a guest into deflating on its own.
    expect((await ctl(host.url, 'modifyvm', n, '--memory-min', '128')).code).toBe(0);
  }
  // Watch the pool all along: held must never exceed its size.
  watcher = (async () => {
    while (watching) {
      try {
        const h = await apiGet<HostView>(host.url, '/host');
        maxHeldMib = Math.max(maxHeldMib, h.pool.heldMib);
      } catch {
        // the host may be restarting
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
});
afterAll(async () => {
  watching = false;
  await watcher;
  await cleanUp(stopAll, () => data.remove());
});

const vm = (name: string) => apiGet<VmView>(host.url, `/vms/${name}`);
const agentFor = (name: string) => spawnAgent({ url: host.url, name, memoryMib: 512 });

it('admits the third guest only after the other two really inflated, and kill -9 returns a holding', async () => {
  const a = agentFor('oc-a');
  await waitFor(async () => (await vm('oc-a')).state === 'running', { what: 'oc-a to run', timeoutMs: 20_000 });
  const memA0 = procMemory(a.pid);

  const b = agentFor('oc-b');
  await waitFor(async () => (await vm('oc-b')).state === 'running', { what: 'oc-b to run', timeoutMs: 30_000 });
  // b needed 512 of a free 488: a was asked for 24 and pinned it first.
  expect((await vm('oc-a')).balloon).toMatchObject({ targetMib: 24, actualMib: 24 });
  const pinned = (await vm('oc-a')).balloon!.lock === 'locked';
  expect(balloonGrowthMib(a.pid, memA0, pinned)).toBeGreaterThan(24 * balloonShare(pinned));
  const memB0 = procMemory(b.pid);
  const memA1 = procMemory(a.pid);

  const c: Started = agentFor('oc-c');
  await waitFor(async () => (await vm('oc-c')).state === 'running', { what: 'oc-c to be admitted', timeoutMs: 40_000 });
  const [va, vb] = [await vm('oc-a'), await vm('oc-b')];
  // Both inflated (their pinned balloons, as the kernel sees them, grew)
  // before c ran, by 512 MiB together.
  expect(va.balloon!.actualMib - 24 + vb.balloon!.actualMib).toBeGreaterThanOrEqual(512);
  expect(balloonGrowthMib(a.pid, memA1, pinned)).toBeGreaterThan((va.balloon!.actualMib - 24) * balloonShare(pinned));
  expect(balloonGrowthMib(b.pid, memB0, pinned)).toBeGreaterThan(vb.balloon!.actualMib * balloonShare(pinned));
  const h = await apiGet<HostView>(host.url, '/host');
  expect(h.pool).toMatchObject({ sizeMib: POOL_SIZE_MIB, heldMib: POOL_SIZE_MIB, freeMib: 0 });
  expect(h.vmsRunning).toBe(3);

  // kill -9 of b: its holding returns to the pool. First let every balloon
  // settle, so that what b holds is not still moving by a chunk.
  await waitFor(
    async () => {
      const vms = await Promise.all(['oc-a', 'oc-b', 'oc-c'].map(vm));
      return vms.every((v) => v.balloon && (v.balloon.state === 'short' || (v.balloon.state === 'steady' && v.balloon.actualMib === v.balloon.targetMib)));
    },
    { what: 'the balloons to settle', timeoutMs: 20_000 },
  );
  const heldB = (await vm('oc-b')).heldMib!;
  expect(heldB).toBeGreaterThan(0);
  await b.kill();
  await waitFor(async () => (await vm('oc-b')).state === 'poweroff', { what: "oc-b's holding to return", timeoutMs: 15_000 });
  // What b held is counted nowhere any more: the pool holds exactly what a
  // and c hold (read together with it), and the rest is free again.
  const [after, ra, rc] = [await apiGet<HostView>(host.url, '/host'), await vm('oc-a'), await vm('oc-c')];
  expect(after.pool.heldMib).toBe(ra.heldMib! + rc.heldMib!);
  expect(after.pool.freeMib).toBe(POOL_SIZE_MIB - after.pool.heldMib);
  expect(maxHeldMib).toBeLessThanOrEqual(POOL_SIZE_MIB);
  await Promise.all([a.stop(), c.stop()]);
});
