// Fault drills: kill -9 of the host, and the connection that drops and comes
// back. The host restarts on the same port with the same data directory:
// every VM setting is intact, the agents kept their balloons meanwhile
// (VmLck), reconnect with them and resync; the pool is rebuilt without ever
// holding more than its size; and no target is applied twice or lost (the
// generations each agent applied only increase, and the newest is the host's).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { apiGet, ctl, ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir, type Started, type StartedHost } from './support/host.js';
import { freePort } from './support/ports.js';
import { balloonKept, procMemory } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const POOL_SIZE_MIB = 768;
// 212 + 412 = 624 MiB held of 768: both fit, whichever comes back first.
const VMS = [
  { name: 'rs-a', memoryMib: 512, defaultBalloonMib: 300 },
  { name: 'rs-b', memoryMib: 512, defaultBalloonMib: 100 },
] as const;

let data: ReturnType<typeof tempDataDir>;
let port: number;
let host: StartedHost;
const agents = new Map<string, Started>();
let watching = true;
let maxHeldMib = 0;
let watcher: Promise<void>;

const startHostOnPort = () => spawnHost({ dataDir: data.dir, poolSizeMib: POOL_SIZE_MIB, extra: ['--listen', `127.0.0.1:${port}`] });
const vm = (name: string) => apiGet<VmView>(host.url, `/vms/${name}`);
const settingsOf = (v: VmView) => ({
  memoryMib: v.memoryMib,
  defaultBalloonMib: v.defaultBalloonMib,
  pageFusion: v.pageFusion,
  balloonPolicy: v.balloonPolicy,
  memoryMinMib: v.memoryMinMib,
  balloonMaxMib: v.balloonMaxMib,
  memoryWeight: v.memoryWeight,
  memoryBufferPercent: v.memoryBufferPercent,
});

/** The generations an agent applied, in order, from its debug log (a Welcome's target is applied and logged like any other). */
function appliedGenerations(agent: Started): number[] {
  const out: number[] = [];
  for (const line of agent.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as { msg?: string; generation?: number };
      if (rec.msg === 'new balloon target' && typeof rec.generation === 'number') out.push(rec.generation);
    } catch {
      // not a log line
    }
  }
  return out;
}

beforeAll(async () => {
  data = tempDataDir();
  port = await freePort();
  host = await startHostOnPort();
  for (const v of VMS) {
    expect((await ctl(host.url, 'createvm', '--name', v.name, '--memory', String(v.memoryMib))).code).toBe(0);
    expect(
      (
        await ctl(
          host.url,
          'modifyvm',
          v.name,
          '--guestmemoryballoon',
          String(v.defaultBalloonMib),
          '--memory-min',
          '64',
          '--memory-weight',
          '250',
          '--memory-buffer',
          '15',
        )
      ).code,
    ).toBe(0);
  }
  watcher = (async () => {
    while (watching) {
      try {
        maxHeldMib = Math.max(maxHeldMib, (await apiGet<HostView>(host.url, '/host')).pool.heldMib);
      } catch {
        // the host is down for the drill
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  for (const v of VMS) {
    agents.set(v.name, spawnAgent({ url: host.url, name: v.name, memoryMib: v.memoryMib, floorMib: 16, extra: ['--log-level', 'debug'] }));
    await waitFor(
      async () => {
        const b = (await vm(v.name)).balloon;
        return b !== undefined && b.actualMib === v.defaultBalloonMib;
      },
      { what: `${v.name} to run with its default balloon`, timeoutMs: 30_000 },
    );
  }
}, 90_000);

afterAll(async () => {
  watching = false;
  await watcher;
  await cleanUp(stopAll, () => data.remove());
});

it('survives kill -9 of the host: settings intact, balloons kept and resynced, pool consistent, generations unbroken', async () => {
  const before = new Map<string, VmView>();
  for (const v of VMS) before.set(v.name, await vm(v.name));
  // Kept balloons, as the kernel sees them: VmLck where pinned (VmRSS would
  // also fall by the fresh agents' start-up garbage, freed at a later GC).
  const memBefore = new Map(VMS.map((v) => [v.name, procMemory(agents.get(v.name)!.pid)]));
  const pinned = new Map(VMS.map((v) => [v.name, before.get(v.name)!.balloon!.lock === 'locked']));
  const keptBalloon = (name: (typeof VMS)[number]['name']) =>
    balloonKept(agents.get(name)!.pid, memBefore.get(name)!, before.get(name)!.balloon!.actualMib, pinned.get(name)!);

  await host.kill();
  // The agents notice and keep their balloons while the host is away.
  for (const v of VMS) {
    const agent = agents.get(v.name)!;
    await waitFor(() => /"msg":"disconnected/.test(agent.output()), { what: `${v.name} to notice the host is gone` });
    expect(keptBalloon(v.name)).toBe(true);
  }

  host = await startHostOnPort();
  for (const v of VMS) {
    await waitFor(async () => (await vm(v.name)).state === 'running', { what: `${v.name} to reconnect`, timeoutMs: 40_000 });
  }
  for (const v of VMS) {
    const now = await vm(v.name);
    const was = before.get(v.name)!;
    expect(settingsOf(now)).toEqual(settingsOf(was));
    // Resumed where it was: same target and actual, a newer generation.
    expect(now.balloon).toMatchObject({ targetMib: was.balloon!.targetMib, actualMib: was.balloon!.actualMib });
    expect(now.balloon!.generation).toBeGreaterThan(was.balloon!.generation);
    expect(keptBalloon(v.name)).toBe(true);
  }
  const h = await apiGet<HostView>(host.url, '/host');
  expect(h.pool).toEqual({ sizeMib: POOL_SIZE_MIB, heldMib: 212 + 412, reclaimedMib: 300 + 100, freeMib: POOL_SIZE_MIB - 624 });
  expect(maxHeldMib).toBeLessThanOrEqual(POOL_SIZE_MIB);

  // A target after the restart is applied exactly once.
  const set = await ctlJson<VmView>(host.url, 'controlvm', 'rs-a', 'guestmemoryballoon', '260', '--wait');
  expect(set.balloon).toMatchObject({ targetMib: 260, actualMib: 260 });
  for (const v of VMS) {
    const gens = appliedGenerations(agents.get(v.name)!);
    const current = (await vm(v.name)).balloon!.generation;
    expect(gens.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < gens.length; i++) expect(gens[i]!).toBeGreaterThan(gens[i - 1]!);
    expect(gens.at(-1)).toBe(current);
  }
});

it('the connection drops and returns (graceful restart on the same port): balloons kept, no target lost', async () => {
  const a = agents.get('rs-a')!;
  const mem = procMemory(a.pid);
  const was = await vm('rs-a');
  expect(await host.stop()).toBe(0);
  host = await startHostOnPort();
  await waitFor(async () => (await vm('rs-a')).state === 'running' && (await vm('rs-b')).state === 'running', { what: 'both to reconnect', timeoutMs: 40_000 });
  const now = await vm('rs-a');
  expect(now.balloon).toMatchObject({ targetMib: was.balloon!.targetMib, actualMib: was.balloon!.actualMib });
  expect(balloonKept(a.pid, mem, was.balloon!.actualMib, was.balloon!.lock === 'locked')).toBe(true);
  // Latest wins across the gap: two targets in a row, the last one is what the agent holds.
  expect((await ctl(host.url, 'controlvm', 'rs-a', 'guestmemoryballoon', '280')).code).toBe(0);
  expect((await ctl(host.url, 'controlvm', 'rs-a', 'guestmemoryballoon', '240', '--wait')).code).toBe(0);
  const final = await vm('rs-a');
  expect(final.balloon).toMatchObject({ targetMib: 240, actualMib: 240 });
  const gens = appliedGenerations(a);
  for (let i = 1; i < gens.length; i++) expect(gens[i]!).toBeGreaterThan(gens[i - 1]!);
  expect(gens.at(-1)).toBe(final.balloon!.generation);
  expect(maxHeldMib).toBeLessThanOrEqual(POOL_SIZE_MIB);
});
