// The e2e helpers' teardown does what its comment says: stopAll stops the
// agents first, each saying Goodbye to a host that still runs, and only then
// the hosts, so no host sees a mass disconnect while a suite tears down.
// Real host and agent processes; the order is read from the host's own log.
import { afterAll, expect, it } from 'vitest';
import { ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir } from './support/host.js';
import { waitFor } from './support/wait.js';

const data = tempDataDir();
afterAll(() => data.remove());

it('stops the agents (each says goodbye to a running host) before the host', async () => {
  const host = await spawnHost({ dataDir: data.dir, poolSizeMib: 1024, autoRegister: true });
  const names = ['sa-1', 'sa-2', 'sa-3'];
  const agents = names.map((name) => spawnAgent({ url: host.url, name, memoryMib: 128 }));
  await waitFor(async () => (await ctlJson<unknown[]>(host.url, 'list', 'runningvms')).length === names.length, {
    what: 'the agents to be admitted',
    timeoutMs: 60_000,
  });
  await stopAll();
  expect(host.proc.exitCode).toBe(0);
  for (const a of agents) expect(a.proc.exitCode).toBe(0);
  const lines = host
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; vm?: string; why?: string });
  const stopping = lines.findIndex((l) => l.msg === 'balloon-host stopping');
  expect(stopping).toBeGreaterThan(0);
  for (const name of names) {
    const goodbye = lines.findIndex((l) => l.msg === 'guest said goodbye' && l.vm === name);
    expect(goodbye, `${name} said goodbye before the host stopped`).toBeGreaterThan(-1);
    expect(goodbye).toBeLessThan(stopping);
  }
  // No session was cut by the host's own shutdown.
  expect(lines.filter((l) => l.why === 'host shutdown')).toEqual([]);
}, 120_000);
