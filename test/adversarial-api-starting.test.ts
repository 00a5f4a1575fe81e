// modifyvm while startvm brings the VM up: VirtualBox refuses to change a VM
// that is starting (its session is locked), and so must the host. Before, a
// PATCH of memoryMib during the start was accepted: the agent had been given
// the old size (--memory-mib), the cgroup the old limit, the registry the new
// one. The agent here never says Hello, so the VM stays 'starting' for as
// long as the test needs (no race with the admission).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HostHandle } from '@memballoon/host';
import { cleanUp } from './support/cleanup.js';
import { tempDataDir } from './support/host.js';
import { adminApi, startTestHost, testGuests } from './support/in-process-host.js';
import { waitFor } from './support/wait.js';

let host: HostHandle;
let data: ReturnType<typeof tempDataDir>;

beforeAll(async () => {
  data = tempDataDir();
  host = await startTestHost({
    dataDir: data.dir,
    poolSizeMib: 1024,
    // An "agent" that never connects: the start waits for its Hello until stopped.
    guests: testGuests({ forceProcessMode: true, agentCommand: ['sh', '-c', 'exec sleep 600', 'silent-agent'], startTimeoutMs: 120_000 }),
  });
});
afterAll(async () => {
  await cleanUp(
    () => host?.close(),
    () => data?.remove(),
  );
});

it('modifyvm of a VM that is starting is refused (vm_running, 409) and changes nothing; unregistervm too; poweroff ends the start', async () => {
  host.service.createVm({ name: 'booting', memoryMib: 256 });
  const start = adminApi(host, 'POST', '/vms/booting/startvm', { command: ['sleep', '600'] });
  await waitFor(() => host.service.isStarting('booting'), { what: 'booting to be starting' });

  for (const patch of [{ memoryMib: 128 }, { pageFusion: true }, { defaultBalloonMib: 100 }]) {
    const r = await adminApi(host, 'PATCH', '/vms/booting', patch);
    expect(r.status, JSON.stringify(patch)).toBe(409);
    expect(r.json.error.code).toBe('vm_running');
  }
  expect((await adminApi(host, 'DELETE', '/vms/booting')).status).toBe(409);
  expect(host.service.vmView('booting')).toMatchObject({ memoryMib: 256, pageFusion: false, defaultBalloonMib: 0 });
  // The policy settings may change while a VM runs, and so while it starts.
  expect((await adminApi(host, 'PATCH', '/vms/booting', { memoryWeight: 300 })).status).toBe(200);

  expect((await adminApi(host, 'POST', '/vms/booting/poweroff')).status).toBe(200);
  expect((await start).status).toBeGreaterThanOrEqual(400);
  await waitFor(() => !host.service.isStarting('booting'), { what: 'the start to end' });
  expect((await adminApi(host, 'PATCH', '/vms/booting', { memoryMib: 128 })).status).toBe(200);
});
