// Page fusion through the libraries, in one process: startHost and three
// startAgent guests, each with createPageFusion's plugin. Regions registered
// before and after the connection reach the host's table; releasing a region
// and ending a session take its pages out again.
import { randomFillSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHost, type HostHandle } from '@memballoon/host';
import { createPageFusion, startAgent, type AgentHandle, type PageFusion, type SharedRegionHandle } from '@memballoon/guest-agent';
import { tempDataDir } from './support/host.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const COMMON_MIB = 4;
let host: HostHandle;
let data: ReturnType<typeof tempDataDir>;
const guests: Array<{ name: string; agent: AgentHandle; pf: PageFusion; common: SharedRegionHandle }> = [];

beforeAll(async () => {
  data = tempDataDir();
  // KSM is not driven here (fusion-ksm and fusion-e2e do that): hints only.
  host = await startHost({ listenPort: 0, dataDir: data.dir, poolSizeMib: 2048, policyIntervalMs: 0, dashboard: false, fusion: { ksm: null } });
});
afterAll(async () => {
  await cleanUp(
    () => Promise.all(guests.map((g) => g.agent.close())),
    () => host?.close(),
    () => data?.remove(),
  );
});

describe('page fusion through the libraries', () => {
  it('hints sharable pages across guests and withdraws them on release and disconnect', async () => {
    const common = Buffer.alloc(COMMON_MIB * 1024 * 1024);
    randomFillSync(common);
    for (const name of ['lib-a', 'lib-b', 'lib-c']) {
      // createvm issues the VM's guest token (hosts check it in Hello).
      const { token } = host.service.createVm({ name, memoryMib: 256 });
      host.service.modifyVm(name, { pageFusion: true });
      const pf = await createPageFusion();
      // One region before the connection (sent after Welcome), one after (sent at once).
      const handle = pf.registerSharedRegion({ name: 'common', version: '1', data: common });
      const agent = await startAgent({ host: host.url, name, token, memoryMib: 256, domain: 'process', lock: false, workerThreads: 0, fusion: pf.plugin });
      guests.push({ name, agent, pf, common: handle });
    }
    await waitFor(() => guests.every((g) => g.agent.status === 'connected'), { what: 'three connected agents' });
    const privates = guests.map((g) => {
      const own = Buffer.alloc(1024 * 1024);
      randomFillSync(own);
      return g.pf.registerSharedRegion({ name: `private-${g.name}`, version: '1', data: own });
    });
    const sharable = () => guests.map((g) => host.service.vmView(g.name).sharableMib);
    await waitFor(() => sharable().every((s) => s === COMMON_MIB) && guests.every((g) => host.service.vmView(g.name).state === 'running'), {
      what: `sharableMib ${COMMON_MIB} in every guest (last: ${sharable().join(', ')})`,
    });
    expect(host.service.hostView().sharableMib).toBeCloseTo(3 * COMMON_MIB);
    // The regions were advised mergeable: the VMs have page fusion on.
    expect(guests.every((g) => g.pf.registry.mergeState().mergeableRegions === 2)).toBe(true);

    // A private region withdrawn changes nothing shared; the common one in one guest does.
    privates[0]!.release();
    guests[2]!.common.release();
    await waitFor(() => host.service.vmView('lib-c').sharableMib === 0 && host.service.hostView().sharableMib === 2 * COMMON_MIB, {
      what: 'the release to reach the host',
    });
    expect(sharable()).toEqual([COMMON_MIB, COMMON_MIB, 0]);

    // A guest that leaves takes its hints with it.
    await guests[1]!.agent.close();
    await waitFor(() => host.service.vmView('lib-a').sharableMib === 0, { what: 'the departed guest to leave the table' });
    expect(host.service.hostView().sharableMib).toBe(0);
  });
});
