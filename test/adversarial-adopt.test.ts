// modifyvm --cgroup PATH with paths an admin should not be able to adopt: the
// hand-off lowers an adopted cgroup's limit, so the host's own cgroup (or an
// ancestor of it, or of the pool cgroup) would squeeze the host and every
// guest; a file inside a cgroup is no cgroup. Each is refused with a 4xx that
// says why, and nothing is adopted; a cgroup of the guest's own still is.
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HostHandle } from '@memballoon/host';
import { cgroupV1SkipReason, V1_MEMORY } from './support/cgroup-v1.js';
import { cleanUp } from './support/cleanup.js';
import { tempDataDir } from './support/host.js';
import { adminApi, startTestHost, testGuests } from './support/in-process-host.js';
import { waitFor } from './support/wait.js';

const skip = cgroupV1SkipReason();
const TOP = `memballoon-qa2-adopt-${process.pid}`;
let host: HostHandle | undefined;
let data: ReturnType<typeof tempDataDir>;

beforeAll(async () => {
  data = tempDataDir();
  if (skip) return;
  mkdirSync(join(V1_MEMORY, TOP, 'own'), { recursive: true });
  host = await startTestHost({ dataDir: data.dir, poolSizeMib: 1024, guests: testGuests({ cgroupParent: `${TOP}/pool`, poolCgroup: true }) });
  host.service.createVm({ name: 'adopter', memoryMib: 256 });
});
afterAll(async () => {
  await cleanUp(
    () => host?.close(),
    async () => {
      for (const d of ['own', 'pool', ''].map((s) => join(V1_MEMORY, TOP, s))) {
        if (existsSync(d)) await waitFor(() => (rmdirSync(d), true), { what: `removing ${d}` });
      }
    },
    () => data.remove(),
  );
});

it.skipIf(skip !== '')(
  `refuses the host's own cgroup, an ancestor of the pool cgroup and a file; adopts a cgroup of the guest's own${skip ? ` (${skip})` : ''}`,
  async () => {
    const own = /^\d+:[^:]*\bmemory\b[^:]*:(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
    expect(own, 'this process is in a v1 memory cgroup').toBeDefined();
    const cases: Array<[string, number, RegExp]> = [
      [join(V1_MEMORY, TOP), 400, /holds the host's parent of guests/],
      [join(V1_MEMORY, TOP, 'own', 'memory.limit_in_bytes'), 404, /does not exist/],
    ];
    // The root is refused on its own grounds; any other cgroup of this process is the host's.
    if (own !== '/') cases.push([join(V1_MEMORY, own!), 400, /holds the host itself/]);
    for (const [path, status, message] of cases) {
      const r = await adminApi(host!, 'PATCH', '/vms/adopter', { cgroup: path });
      expect(r.status, path).toBe(status);
      expect(r.json.error.message, path).toMatch(message);
      expect(host!.service.vmView('adopter').managed, path).toBeUndefined();
    }
    const ok = await adminApi(host!, 'PATCH', '/vms/adopter', { cgroup: join(V1_MEMORY, TOP, 'own') });
    expect(ok.status).toBe(200);
    expect(host!.service.vmView('adopter').managed).toBeDefined();
    expect((await adminApi(host!, 'PATCH', '/vms/adopter', { cgroup: null })).status).toBe(200);
  },
);
