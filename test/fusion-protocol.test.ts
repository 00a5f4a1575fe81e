// Page fusion at the wire, against the real host with fake guests: hints
// that break the rules (a gap between frames, more pages than the host keeps
// per VM) are refused with an Error frame of the right code, the session goes
// on, and valid hints that follow still count.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bodies, type SharedRegion } from '@memballoon/protocol';
import { startHost, type HostHandle } from '@memballoon/host';
import { connectFake, helloFor, registerVm, type FakeGuest } from './support/fake-guest.js';
import { tempDataDir } from './support/host.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

let host: HostHandle;
let data: ReturnType<typeof tempDataDir>;
const open: FakeGuest[] = [];

beforeEach(async () => {
  data = tempDataDir();
  host = await startHost({
    listenPort: 0,
    dataDir: data.dir,
    poolSizeMib: 2048,
    policyIntervalMs: 0,
    dashboard: false,
    fusion: { ksm: null, maxHintedPagesPerVm: 1000 },
  });
});
afterEach(async () => {
  await cleanUp(
    () => {
      for (const g of open.splice(0)) g.close();
    },
    () => host?.close(),
    () => data?.remove(),
  );
});

// A region of `pages` pages whose hashes are the page numbers (from `from`), as one frame.
function region(regionId: number, pages: number, from = 0, over: Partial<SharedRegion> = {}): SharedRegion {
  const pageHashes = new Uint8Array(pages * 8);
  const confirmHashes = new Uint8Array(pages * 8);
  const pv = new DataView(pageHashes.buffer);
  const cv = new DataView(confirmHashes.buffer);
  for (let p = 0; p < pages; p++) {
    pv.setBigUint64(p * 8, BigInt(from + p), true);
    cv.setBigUint64(p * 8, BigInt(from + p) * 7919n, true);
  }
  return {
    regionId,
    name: `r${regionId}`,
    version: '1',
    sizeBytes: pages * 4096,
    pageSizeBytes: 4096,
    firstPage: 0,
    pageHashes,
    confirmHashes,
    mergeable: false,
    last: true,
    ...over,
  };
}

async function guest(name: string): Promise<FakeGuest> {
  registerVm(host, { name, memoryMib: 256 });
  const g = await connectFake(host.url);
  open.push(g);
  g.send(helloFor(name, 256));
  await g.next('welcome');
  return g;
}

describe('page fusion frames at the host', () => {
  it('refuses bad hints with an Error frame and keeps the session and the good hints', async () => {
    const a = await guest('pa');
    const b = await guest('pb');
    // A frame that starts a region in its middle: invalid_argument.
    a.send(bodies.sharedRegion(region(1, 10, 0, { firstPage: 5, sizeBytes: 15 * 4096 })));
    expect(await a.next('error')).toMatchObject({ code: 'invalid_argument', message: expect.stringMatching(/starts at page 5, not 0/) });
    // More pages than the host keeps for one VM: out_of_range.
    a.send(bodies.sharedRegion(region(2, 1001)));
    expect(await a.next('error')).toMatchObject({ code: 'out_of_range', message: expect.stringMatching(/limit of 1000 pages per VM/) });
    // The session goes on: valid hints count.
    a.send(bodies.sharedRegion(region(3, 512)));
    b.send(bodies.sharedRegion(region(1, 512, 256)));
    await waitFor(() => host.service.vmView('pa').sharableMib === 1 && host.service.vmView('pb').sharableMib === 1, {
      what: '256 common pages (1 MiB) in both',
    });
    expect(host.service.isRunning('pa')).toBe(true);
    expect(a.closed).toBeUndefined();
    // Withdrawn and disconnected hints leave the table.
    b.send(bodies.sharedRegionRemoved({ regionId: 1 }));
    await waitFor(() => host.service.vmView('pa').sharableMib === 0, { what: 'the removal to count' });
    b.send(bodies.sharedRegion(region(1, 512, 256)));
    await waitFor(() => host.service.vmView('pa').sharableMib === 1, { what: 'the region to count again' });
    b.close();
    await waitFor(() => !host.service.isRunning('pb') && host.service.vmView('pa').sharableMib === 0, { what: 'the disconnect to clear its hints' });
  });
});
