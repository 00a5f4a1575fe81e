// Page fusion end to end with real processes: three balloon-agents share the
// same 32 MiB file (plus a private file each) with --share-file. The host's
// hints must call the common pages sharable and the private ones not; with
// page fusion on and KSM drivable here, the kernel must merge them and the
// guests' shared memory must show it.
import { randomFillSync } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { DEFAULT_KSM_LOCK_PATH, KsmSysfs, probeKsm, type KsmState } from '@memballoon/host';
import { ctl, ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir, type Started, type StartedHost } from './support/host.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const COMMON_MIB = 32;
const PRIVATE_MIB = 4;
const GUESTS = ['fusion-a', 'fusion-b', 'fusion-c'];
const ksmDrivable = probeKsm().ok && existsSync('/proc/self/ksm_merging_pages');

let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;
let ksmFound: KsmState | null = null;
const agents: Started[] = [];

// Files with content no other test holds (fresh random bytes), so KSM merges
// exactly these guests' pages with each other.
function writeRandomFile(path: string, mib: number): void {
  const buf = Buffer.allocUnsafe(mib * 1024 * 1024);
  randomFillSync(buf);
  writeFileSync(path, buf);
}

beforeAll(async () => {
  data = tempDataDir();
  if (ksmDrivable) ksmFound = new KsmSysfs().read();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: 4096 });
  writeRandomFile(join(data.dir, 'common.bin'), COMMON_MIB);
  for (const name of GUESTS) {
    writeRandomFile(join(data.dir, `${name}.bin`), PRIVATE_MIB);
    expect((await ctl(host.url, 'createvm', '--name', name, '--memory', '256')).code).toBe(0);
    expect((await ctl(host.url, 'modifyvm', name, '--pagefusion', 'on')).code).toBe(0);
  }
});
afterAll(async () => {
  await cleanUp(stopAll, () => data?.remove());
});

const vm = (name: string) => ctlJson<VmView>(host.url, 'showvminfo', name);

describe('page fusion with real agents', () => {
  it('hints: the common 32 MiB are sharable in every guest, the private files are not', async () => {
    for (const name of GUESTS) {
      agents.push(
        spawnAgent({
          url: host.url,
          name,
          memoryMib: 256,
          floorMib: 16,
          extra: ['--share-file', join(data.dir, 'common.bin'), '--share-file', join(data.dir, `${name}.bin`)],
        }),
      );
    }
    await waitFor(async () => (await Promise.all(GUESTS.map(vm))).every((v) => v.state === 'running'), { what: 'three running guests', timeoutMs: 30_000 });
    // The agents send their hints right after Welcome: the host knows at once
    // (the deadline only guards against a hang: three balloonctl runs per poll
    // take seconds on a busy machine).
    const views = await waitFor(
      async () => {
        const v = await Promise.all(GUESTS.map(vm));
        return v.every((x) => x.sharableMib !== undefined && Math.abs(x.sharableMib - COMMON_MIB) < 0.1) && v;
      },
      { what: `sharableMib ≈ ${COMMON_MIB} in every guest`, timeoutMs: 30_000 },
    );
    for (const v of views) expect(v).toMatchObject({ pageFusion: true, state: 'running' });
    const info = await ctlJson<HostView>(host.url, 'showhostinfo');
    expect(info.sharableMib).toBeCloseTo(GUESTS.length * COMMON_MIB, 0);
    // And for people, without --json.
    const text = await ctl(host.url, 'showvminfo', GUESTS[0]!);
    expect(text.stdout).toMatch(/^Page fusion: +on$/m);
    expect(text.stdout).toMatch(new RegExp(`^Page fusion sharable: +${COMMON_MIB} MiB$`, 'm'));

    // One guest leaves: the other two still share the common file with each other.
    await agents[2]!.stop();
    await waitFor(async () => (await vm(GUESTS[2]!)).state === 'poweroff', { what: 'the third guest to stop' });
    expect((await ctlJson<HostView>(host.url, 'showhostinfo')).sharableMib).toBeCloseTo(2 * COMMON_MIB, 0);
    expect((await vm(GUESTS[0]!)).sharableMib).toBeCloseTo(COMMON_MIB, 0);
  }, 120_000);

  it.runIf(ksmDrivable)(
    'KSM: the kernel merges the common pages and sharedMib grows',
    async () => {
      // The host drives KSM once no other driver (the KSM test) holds the lock.
      const views = await waitFor(
        async () => {
          const v = await Promise.all(GUESTS.slice(0, 2).map(vm));
          return v.every((x) => (x.sharedMib ?? 0) >= COMMON_MIB - 1) && v;
        },
        { what: 'sharedMib to reach the common file in the running guests', timeoutMs: 90_000, intervalMs: 250 },
      );
      for (const v of views) expect(v.sharedMib).toBeLessThanOrEqual(v.memoryMib);
      const info = await ctlJson<HostView>(host.url, 'showhostinfo');
      expect(info.ksm.available).toBe(true);
      expect(info.sharedMib).toBeGreaterThanOrEqual(2 * (COMMON_MIB - 1));

      // The host puts KSM back as it found it when it stops (unless another
      // driver, the KSM test, has taken over meanwhile: it restores its own).
      await stopAll();
      if (!existsSync(DEFAULT_KSM_LOCK_PATH) && ksmFound) {
        const now = new KsmSysfs().read();
        expect({ run: now.run, pagesToScan: now.pagesToScan, sleepMillisecs: now.sleepMillisecs }).toEqual({
          run: ksmFound.run,
          pagesToScan: ksmFound.pagesToScan,
          sleepMillisecs: ksmFound.sleepMillisecs,
        });
      }
    },
    180_000,
  );
});
