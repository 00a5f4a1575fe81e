// A forged adopted-kind guest record (<data-dir>/guests/NAME.json): the host
// gives an adopted cgroup its own limit back at start-up when nobody is left
// in it, so a record naming any empty cgroup had the host, as root, write the
// limit the record names into it. Records are acted on only where they agree
// with the registry's modifyvm --cgroup setting of their VM: a record of an
// unregistered VM, and one of a registered VM that adopted no cgroup (or
// another), are reported and left alone; the genuine adoption beside them
// still gets its limit back.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import type { HostHandle } from '@memballoon/host';
import { cgroupMib, cgroupV1SkipReason, makeV1Cgroup, type TestCgroup } from './support/cgroup-v1.js';
import { cleanUp } from './support/cleanup.js';
import { tempDataDir } from './support/host.js';
import { adminApi, startTestHost, testGuests } from './support/in-process-host.js';

const MIB = 1024 * 1024;
const skip = cgroupV1SkipReason();
const TOP = `memballoon-qa3-records-${process.pid}`;
const data = tempDataDir();
const made: TestCgroup[] = [];
let host: HostHandle | undefined;
const warnings: string[] = [];

afterAll(async () => {
  await cleanUp(
    () => host?.close(),
    ...made.map((c) => () => c.remove()),
    () => data.remove(),
  );
});

const start = () =>
  startTestHost({
    dataDir: data.dir,
    poolSizeMib: 1024,
    logger: pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) }),
    guests: testGuests({ cgroupParent: `${TOP}-parent` }),
  });
const limitMib = (c: TestCgroup) => cgroupMib(c.dir, 'memory.limit_in_bytes');
const setLimitMib = (c: TestCgroup, mib: number) => writeFileSync(join(c.dir, 'memory.limit_in_bytes'), String(mib * MIB));
const forge = (name: string, cgroupDir: string, limitBeforeAdoptionBytes: number) =>
  writeFileSync(join(data.dir, 'guests', `${name}.json`), JSON.stringify({ name, kind: 'adopted', cgroupDir, limitBeforeAdoptionBytes }), { mode: 0o600 });

it.skipIf(skip !== '')(
  `records that disagree with the registry leave their cgroup's limit alone and are reported; the genuine adoption gets its own limit back${skip ? ` (${skip})` : ''}`,
  async () => {
    const victim = makeV1Cgroup(`${TOP}-victim`, 'victim', 300);
    made.push(victim);
    const box = makeV1Cgroup(`${TOP}-box`, 'box', 400);
    made.push(box);
    host = await start();
    host.service.createVm({ name: 'good', memoryMib: 256 });
    host.service.createVm({ name: 'plain', memoryMib: 256 });
    expect((await adminApi(host, 'PATCH', '/vms/good', { cgroup: box.dir })).status).toBe(200);
    await host.close();
    host = undefined;

    // A hand-off's limit left on the genuine adoption (a host killed while it ran) ...
    setLimitMib(box, 200);
    // ... and records nobody made through modifyvm: one of a registered VM with no adopted cgroup,
    // one of an unregistered VM, and the genuine VM's twin under another file name, all naming the victim.
    forge('plain', victim.dir, 16 * MIB);
    forge('ghost', victim.dir, 16 * MIB);
    host = await start();
    // Start-up is done once startHost resolves: the victim's limit is the one it had.
    expect(limitMib(victim), "a forged record's limit was written into a cgroup the registry never adopted").toBe(300);
    expect(limitMib(box), "the genuine adoption's own limit is back").toBe(400);
    expect(host.service.vmView('good').managed).toEqual({ managedBy: 'adopted', cgroup: box.dir });
    expect(host.service.vmView('plain').managed).toBeUndefined();
    const reported = warnings.map((l) => JSON.parse(l) as { vm?: string; msg: string });
    expect(reported.find((w) => w.vm === 'plain')?.msg).toMatch(/disagrees with the registry.*left alone.*modifyvm --cgroup/);
    expect(reported.find((w) => w.vm === 'ghost')?.msg).toMatch(/not registered.*left alone/);

    // A record of the genuine VM rewritten to name the victim: left alone too, and nothing is lost of the VM.
    await host.close();
    host = undefined;
    forge('good', victim.dir, 16 * MIB);
    host = await start();
    expect(limitMib(victim)).toBe(300);
    expect(host.service.vmView('good').managed).toBeUndefined();
    // modifyvm --cgroup again makes it the VM's cgroup once more (the admin's way out the warning names).
    expect((await adminApi(host, 'PATCH', '/vms/good', { cgroup: box.dir })).status).toBe(200);
    expect(host.service.vmView('good').managed).toEqual({ managedBy: 'adopted', cgroup: box.dir });
    expect((await adminApi(host, 'PATCH', '/vms/good', { cgroup: null })).status).toBe(200);
    expect(limitMib(box)).toBe(400);
  },
);
