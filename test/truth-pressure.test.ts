// Kernel truth of a managed guest's figures under memory pressure: its
// balloon handed off (limit = memory − balloon), then its workload grows past
// what the lowered limit leaves (it waits for room a while, then takes the
// memory anyway). Whatever the agent and the host do about it (the balloon
// gives way), what they report must stay what the kernel enforces: limit +
// handed off = the VM's memory, the pool's held memory = that limit, lockedMib
// = VmLck (within 2 MiB: whole chunks), Free within 16 MiB of limit − usage,
// and the workload reaches its peak with no OOM kill.
// Needs root and a v1 memory controller; skips with a printed reason otherwise.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { ctl, ctlJson, spawnHost, stopAll, tempDataDir, type StartedHost } from './support/host.js';
import { cgroupProcs, openTestHierarchy, removeCgroupTree, testCgroupName, type TestHierarchy } from './support/memory-hierarchy.js';
import { cgroupMib, cgroupOomKills } from './support/cgroup-v1.js';
import { vmLockedMib } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const POOL_MIB = 1024;
const VM_MIB = 512;
const BALLOON_MIB = 256;
const PEAK_MIB = 320;
const WORKLOAD = fileURLToPath(new URL('./fixtures/burst-workload.mjs', import.meta.url));
const PARENT = testCgroupName();

let cg: TestHierarchy = { skipReason: '', root: '', version: 1 };
let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;

const poolDir = () => join(cg.root, PARENT);
const vmDir = () => join(poolDir(), 'q1');
const vm = () => ctlJson<VmView>(host.url, 'showvminfo', 'q1');
const logOf = () => readFileSync(join(data.dir, 'logs', 'q1.log'), 'utf8');
const workloadPid = () => cgroupProcs(vmDir()).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1] === WORKLOAD);

beforeAll(async () => {
  cg = await openTestHierarchy(PARENT);
  if (!cg.skipReason && cg.version !== 1) cg.skipReason = 'memory is on cgroup v2 here; this file reads v1 files';
  if (cg.skipReason) return console.log(`truth-pressure skipped: ${cg.skipReason}`);
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: POOL_MIB, extra: ['--cgroup-parent', PARENT, '--pool-cgroup', '--policy-interval-ms', '0'] });
  expect((await ctl(host.url, 'createvm', '--name', 'q1', '--memory', String(VM_MIB))).code).toBe(0);
  // Steps of 8 MiB, a 16 MiB reserve, and at most 2 s of waiting for room per step.
  const r = await ctl(host.url, 'startvm', 'q1', '--type', 'headless', '--', process.execPath, WORKLOAD, String(PEAK_MIB), '8', '16', '2000');
  expect(r.code, r.stderr).toBe(0);
  await waitFor(() => workloadPid(), { what: 'the workload', timeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  if (cg.skipReason) return;
  await cleanUp(
    async () => {
      if (host && (await vm()).state === 'running') await ctl(host.url, 'controlvm', 'q1', 'poweroff');
    },
    stopAll,
    () => removeCgroupTree(poolDir()),
    () => data.remove(),
  );
}, 60_000);

/** Bookkeeping against the kernel, at one look; the reasons it disagrees ('' when it agrees). */
async function disagreements(): Promise<string> {
  const v = await vm();
  const h = await ctlJson<HostView>(host.url, 'showhostinfo');
  const b = v.balloon!;
  const limitMib = cgroupMib(vmDir(), 'memory.limit_in_bytes');
  const usageMib = cgroupMib(vmDir(), 'memory.usage_in_bytes');
  const lockedMib = vmLockedMib(v.pid!);
  const out: string[] = [];
  if (limitMib + b.handedOffMib !== VM_MIB) out.push(`limit ${limitMib} + handed off ${b.handedOffMib} ≠ ${VM_MIB}`);
  if (b.actualMib < b.handedOffMib) out.push(`actual ${b.actualMib} < handed off ${b.handedOffMib}`);
  if (h.pool.heldMib !== VM_MIB - b.actualMib) out.push(`pool held ${h.pool.heldMib} ≠ ${VM_MIB} − actual ${b.actualMib}`);
  if (h.pool.heldMib + h.pool.freeMib !== POOL_MIB) out.push(`held + free ≠ ${POOL_MIB}`);
  if (Math.abs(lockedMib - b.lockedMib) > 2) out.push(`VmLck ${lockedMib.toFixed(1)} ≠ lockedMib ${b.lockedMib}`);
  if (Math.abs((v.stats?.freeMib ?? -1e9) - Math.max(0, limitMib - usageMib)) > 16)
    out.push(`Free ${v.stats?.freeMib} ≠ limit − usage ${(limitMib - usageMib).toFixed(0)}`);
  return out.length ? `${out.join('; ')} (${JSON.stringify(b)})` : '';
}

describe('kernel truth of a managed guest under memory pressure (real v1 cgroups)', () => {
  it('the workload outgrows the lowered limit: it reaches its peak with no OOM kill, and the figures stay what the kernel enforces', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    const r = await ctl(host.url, 'controlvm', 'q1', 'guestmemoryballoon', String(BALLOON_MIB));
    expect(r.code, r.stderr).toBe(0);
    await waitFor(
      async () => {
        const b = (await vm()).balloon;
        return b?.actualMib === BALLOON_MIB && b.handedOffMib === BALLOON_MIB;
      },
      { what: 'the balloon to be handed off', timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(cgroupMib(vmDir(), 'memory.limit_in_bytes')).toBe(VM_MIB - BALLOON_MIB);
    process.kill(workloadPid()!, 'SIGUSR1');
    await waitFor(
      () =>
        logOf()
          .split('\n')
          .some((l) => l.startsWith('peak')),
      { what: `the workload to reach ${PEAK_MIB} MiB`, timeoutMs: 120_000, intervalMs: 200 },
    ).catch(async (err: Error) => {
      throw new Error(
        `${err.message}: ${await disagreements()} limit ${cgroupMib(vmDir(), 'memory.limit_in_bytes')} usage ${cgroupMib(vmDir(), 'memory.usage_in_bytes').toFixed(0)}`,
      );
    });
    expect(cgroupOomKills(vmDir())).toBe(0);
    // At rest under the peak, the figures agree with the kernel (polled: the agent samples once a second).
    let last = '';
    await waitFor(
      async () => {
        last = await disagreements();
        return last === '';
      },
      { what: 'the figures to agree with the kernel under pressure', timeoutMs: 30_000, intervalMs: 500 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${last}`);
    });
    const b = (await vm()).balloon!;
    // The balloon gave way: the workload's peak plus the agent would not fit under the lowered limit.
    expect(b.actualMib).toBeLessThan(BALLOON_MIB);
    console.log(
      JSON.stringify({
        balloon: b,
        limitMib: cgroupMib(vmDir(), 'memory.limit_in_bytes'),
        usageMib: cgroupMib(vmDir(), 'memory.usage_in_bytes'),
        failcnt: cgroupMib(vmDir(), 'memory.failcnt') * 1024 * 1024,
      }),
    );
  }, 240_000);
});
