// Fault drill: kill -9 of an agent while its balloon inflates. Its quota
// returns to the pool because the kernel closes the socket: the host need
// not wait for missed heartbeats (the host's log says which ended the
// session; a deadline of one heartbeat interval would be a timed test that
// fails on a busy machine). The other guest is untouched: same session,
// target, actual, generation and pinned balloon (VmLck).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { apiGet, ctl, spawnAgent, spawnHost, stopAll, tempDataDir, type StartedHost } from './support/host.js';
import { balloonKept, isAlive, procMemory } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;

beforeAll(async () => {
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: 1024 });
  for (const n of ['kill-a', 'kill-b']) expect((await ctl(host.url, 'createvm', '--name', n, '--memory', '256')).code).toBe(0);
});
afterAll(async () => {
  await cleanUp(stopAll, () => data.remove());
});

const vm = (name: string) => apiGet<VmView>(host.url, `/vms/${name}`);

it('returns a killed agent’s quota when its socket closes, not after missed heartbeats, and leaves the other guest alone', async () => {
  const a = spawnAgent({ url: host.url, name: 'kill-a', memoryMib: 256, floorMib: 16 });
  const b = spawnAgent({ url: host.url, name: 'kill-b', memoryMib: 256, floorMib: 16 });
  await waitFor(async () => (await vm('kill-a')).state === 'running' && (await vm('kill-b')).state === 'running', {
    what: 'both guests to run',
    timeoutMs: 30_000,
  });
  expect((await ctl(host.url, 'controlvm', 'kill-b', 'guestmemoryballoon', '48', '--wait')).code).toBe(0);
  const before = await vm('kill-b');
  const memB = procMemory(b.pid);

  // Start an inflate of kill-a and kill it while the balloon is on its way.
  expect((await ctl(host.url, 'controlvm', 'kill-a', 'guestmemoryballoon', '200')).code).toBe(0);
  const seen = await waitFor(async () => {
    const v = await vm('kill-a');
    return v.balloon && v.balloon.targetMib === 200 ? v.balloon : undefined;
  });
  await a.kill();
  expect(isAlive(a.pid)).toBe(false);

  // kill-a's whole holding returns: the pool holds only kill-b's 256 - 48.
  const h = await waitFor(
    async () => {
      const view = await apiGet<HostView>(host.url, '/host');
      return view.pool.heldMib === 256 - 48 && (await vm('kill-a')).state === 'poweroff' ? view : undefined;
    },
    { what: 'kill-a’s quota to return', timeoutMs: 30_000 },
  );
  // ... because the socket closed (1006), not because heartbeats were missed.
  const ended = host
    .output()
    .split('\n')
    .filter((l) => l.includes('"vm":"kill-a"') && l.includes('guest disconnected'))
    .map((l) => (JSON.parse(l) as { why: string }).why);
  expect(ended).toEqual([expect.stringMatching(/^closed \(1006/)]);
  expect(h.pool).toMatchObject({ sizeMib: 1024, heldMib: 208, freeMib: 1024 - 208 });
  expect(h.vmsRunning).toBe(1);

  // kill-b: the same session, nothing re-sent, balloon still pinned.
  const after = await vm('kill-b');
  expect(after.state).toBe('running');
  expect(after.pid).toBe(before.pid);
  expect(after.balloon).toMatchObject({ targetMib: 48, actualMib: 48, generation: before.balloon!.generation });
  expect(balloonKept(b.pid, memB, 48, before.balloon!.lock === 'locked')).toBe(true);
  // Where the inflate was when the agent died (for the log of a failing run).
  expect(seen.actualMib).toBeLessThanOrEqual(200);
});
