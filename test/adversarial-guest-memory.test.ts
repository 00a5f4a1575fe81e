// A real agent whose memory is smaller than its VM's setting (its
// --memory-mib, or its cgroup's limit, below `createvm --memory`): the host
// counts the setting, but the agent refuses any target above its own memory,
// Welcome's included. The host must not send one: the VM runs with its default
// balloon capped to the guest, and a controlvm beyond it is refused at once
// with the reason, instead of a balloon that waits for ever.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HostHandle } from '@memballoon/host';
import { spawnAgent, tempDataDir, type Started } from './support/host.js';
import { adminApi, startTestHost } from './support/in-process-host.js';
import { vmLockedMib } from './support/proc.js';
import { waitFor } from './support/wait.js';

let host: HostHandle;
let data: ReturnType<typeof tempDataDir>;
let agent: Started;

beforeAll(async () => {
  data = tempDataDir();
  host = await startTestHost({ dataDir: data.dir, poolSizeMib: 1024 });
});
afterAll(async () => {
  await agent?.stop();
  await host.close();
  data.remove();
});

it('a guest of 256 MiB in a VM of 512 with a default balloon of 300: it runs at a balloon it can hold; controlvm above 256 is refused naming the guest’s memory', async () => {
  const { token } = host.service.createVm({ name: 'small-guest', memoryMib: 512 });
  host.service.modifyVm('small-guest', { defaultBalloonMib: 300 });
  agent = spawnAgent({ url: host.url, name: 'small-guest', memoryMib: 256, floorMib: 16, extra: ['--token', token] });

  const view = await waitFor(
    () => {
      const v = host.service.vmView('small-guest');
      // Steady, or short at the guest's floor: 256 MiB hold the agent too.
      return v.balloon !== undefined && (v.balloon.state === 'steady' || v.balloon.state === 'short') && v.balloon.actualMib > 0 ? v : undefined;
    },
    { what: 'small-guest to run with a settled balloon', timeoutMs: 30_000 },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; view ${JSON.stringify(host.service.vmView('small-guest'))}; agent: ${agent.output().slice(-2000)}`);
  });
  expect(view.state).toBe('running');
  expect(view.balloon!.targetMib).toBeLessThanOrEqual(256);
  expect(view.balloon!.actualMib).toBeLessThanOrEqual(view.balloon!.targetMib);
  // The kernel's word: the agent pins what the host shows.
  expect(vmLockedMib(agent.pid)).toBeGreaterThanOrEqual(view.balloon!.lockedMib);

  const refused = await adminApi(host, 'PUT', '/vms/small-guest/balloon', { targetMib: 400 });
  expect(refused.status).toBe(400);
  expect(refused.json.error.code).toBe('out_of_range');
  expect(refused.json.error.message).toContain('256 MiB');
  expect(host.service.vmView('small-guest').balloon!.targetMib).toBe(view.balloon!.targetMib);

  // Within the guest's memory, a target still works.
  const ok = await adminApi(host, 'PUT', '/vms/small-guest/balloon', { targetMib: 100 });
  expect(ok.status).toBe(202);
  await waitFor(() => host.service.vmView('small-guest').balloon?.actualMib === 100, { what: 'the balloon at 100 MiB' });
  expect(agent.output()).not.toMatch(/welcome\.target_mib is \d+ MiB, above/);
});
