// An adopted cgroup (`modifyvm --cgroup PATH`) is the admin's, not the
// host's: while its VM runs the hand-off lowers and raises its limit, and at
// power-off the host gives back the limit it had before adoption, even when
// a host killed -9 and restarted in between is the one that sees the VM power
// off, and at a clean host stop; the cgroup itself is never removed. Real
// balloon-host processes, a real agent inside a real v1/v2 memory cgroup;
// needs root (skips otherwise).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { VmView } from '@memballoon/host';
import { ctl, ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir, type Started, type StartedHost } from './support/host.js';
import { cgroupProcs, limitFileOf, openTestHierarchy, testCgroupName, type TestHierarchy } from './support/memory-hierarchy.js';
import { freePort } from './support/ports.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const MiB = 1024 * 1024;
const VM_MIB = 256;
const BALLOON_MIB = 64;
/** The admin's own limit on the cgroup, different from the VM's memory so that a restore is visible. */
const OWN_LIMIT_MIB = 400;
const TAG = testCgroupName();
const PARENT = `${TAG}-parent`;
const FOREIGN = `${TAG}-adopted`;

let cg: TestHierarchy = { skipReason: '', root: '', version: 1 };
let data: ReturnType<typeof tempDataDir>;
let port: number;
let host: StartedHost;

const dir = () => join(cg.root, FOREIGN);
const limitFile = () => limitFileOf(dir(), cg.version);
const limitMib = () => {
  const text = readFileSync(limitFile(), 'utf8').trim();
  return text === 'max' ? Number.POSITIVE_INFINITY : Number(text) / MiB;
};
const procs = () => cgroupProcs(dir());
const vm = () => ctlJson<VmView>(host.url, 'showvminfo', 'ad');
const startHostOnPort = () =>
  spawnHost({ dataDir: data.dir, poolSizeMib: 1024, extra: ['--listen', `127.0.0.1:${port}`, '--cgroup-parent', PARENT, '--policy-interval-ms', '0'] });

beforeAll(async () => {
  cg = await openTestHierarchy(PARENT);
  if (cg.skipReason) return console.log(`adopted cgroup e2e skipped: ${cg.skipReason}`);
  mkdirSync(dir());
  writeFileSync(limitFile(), String(OWN_LIMIT_MIB * MiB));
  data = tempDataDir();
  port = await freePort();
  host = await startHostOnPort();
  expect((await ctl(host.url, 'createvm', '--name', 'ad', '--memory', String(VM_MIB))).code).toBe(0);
}, 60_000);

afterAll(async () => {
  if (cg.skipReason) return;
  await cleanUp(
    stopAll,
    () => existsSync(dir()) && rmdirSync(dir()),
    () => data.remove(),
  );
  expect(existsSync(join(cg.root, PARENT))).toBe(false);
});

async function runAgent(): Promise<Started> {
  const agent = spawnAgent({ url: host.url, name: 'ad', memoryMib: VM_MIB, cgroupDir: dir() });
  await waitFor(async () => (await vm()).state === 'running', { what: 'the agent to be admitted', timeoutMs: 60_000 });
  return agent;
}

/** Balloons the VM and waits until the hand-off has lowered the cgroup's limit under it. */
async function squeeze(): Promise<void> {
  const r = await ctl(host.url, 'controlvm', 'ad', 'guestmemoryballoon', String(BALLOON_MIB), '--wait');
  expect(r.code, r.stderr).toBe(0);
  await waitFor(async () => (await vm()).balloon?.handedOffMib === BALLOON_MIB && limitMib() === VM_MIB - BALLOON_MIB, {
    what: 'the hand-off to lower the limit',
    timeoutMs: 60_000,
  });
}

it('gives the cgroup its own limit back at power-off, also after a host restart in between, and never removes it', async (ctx) => {
  if (cg.skipReason) return ctx.skip();
  expect((await ctl(host.url, 'modifyvm', 'ad', '--cgroup', FOREIGN)).code).toBe(0);
  expect(limitMib()).toBe(OWN_LIMIT_MIB);

  // 1. The agent dies (kill -9: no deflate, nothing raised by the agent's goodbye).
  let agent = await runAgent();
  await squeeze();
  await agent.kill();
  await waitFor(async () => (await vm()).state === 'poweroff' && limitMib() === OWN_LIMIT_MIB, { what: 'the limit back at power-off', timeoutMs: 30_000 });
  expect(existsSync(dir())).toBe(true);

  // 2. The host is killed -9 while the VM runs squeezed; the next host sees the power-off.
  agent = await runAgent();
  await squeeze();
  await host.kill();
  host = await startHostOnPort();
  await waitFor(async () => (await vm()).state === 'running', { what: 'the agent to reconnect to the new host', timeoutMs: 60_000 });
  expect(limitMib()).toBeLessThan(OWN_LIMIT_MIB);
  await agent.kill();
  await waitFor(async () => (await vm()).state === 'poweroff' && limitMib() === OWN_LIMIT_MIB, {
    what: 'the limit back at power-off after a restart',
    timeoutMs: 30_000,
  });

  // 3. A clean host stop while the VM runs squeezed: the host powers nothing
  // of the admin's off, but the VM no longer runs here, so its limit goes back.
  agent = await runAgent();
  await squeeze();
  await host.stop();
  expect(limitMib()).toBe(OWN_LIMIT_MIB);
  await agent.kill();
  host = await startHostOnPort();

  // 4. Let go of the cgroup: it stays, with its own limit, and nobody in it.
  expect((await ctl(host.url, 'modifyvm', 'ad', '--cgroup', 'none')).code).toBe(0);
  expect(existsSync(dir())).toBe(true);
  expect(limitMib()).toBe(OWN_LIMIT_MIB);
  expect(procs()).toEqual([]);
  await host.stop();
}, 240_000);
