// The hand-off of a guest whose cgroup is full of page cache, on the real
// kernel: a workload wrote files inside the guest's v1 memory cgroup, so the
// cache fills it up to its limit (usage ≈ limit, little of it free). The
// agent counts inactive cache as available, so its balloon inflates (the
// kernel drops cache to give it pages); the host then hands the balloon off
// with no slack to lower the limit first. The hand-off must still complete:
// the limit ends at memory − balloon, the balloon's pages are released, and
// no workload is OOM-killed on the way.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelMemoryCgroup, kernelCgroupFs, type HostHandle } from '@memballoon/host';
import { cgroupMib, cgroupNumber, cgroupOomKills, cgroupV1SkipReason, makeV1Cgroup, vmLockedMib, waitFor, type TestCgroup } from './support/index.js';
import { spawnAgent, tempDataDir, type Started } from './support/host.js';
import { startTestHost } from './support/in-process-host.js';
import { cleanUp } from './support/cleanup.js';
import { captureLogger } from './support/capture-log.js';

const skipReason = cgroupV1SkipReason();
if (skipReason) console.log(`skipping the page-cache hand-off e2e: ${skipReason}`);

describe.skipIf(skipReason !== '')('hand-off of a guest whose cgroup is full of page cache (real kernel, v1)', () => {
  const memoryMib = 512;
  const cacheMib = 400;
  let cg: TestCgroup | undefined;
  let host: HostHandle | undefined;
  let agent: Started | undefined;
  let agentPid = 0;
  const data = tempDataDir();
  // The driver's debug log: one 'agent answered' line per release the host asked for.
  const log = captureLogger('debug');
  const releases = () => log.lines().filter((l) => l.msg === 'hand-off: agent answered').length;
  // On the disk (not tmpfs): file pages the kernel can drop once written back.
  const files = mkdtempSync(join(data.dir, 'files-'));

  beforeAll(async () => {
    cg = makeV1Cgroup(`memballoon-test-handoff-cache-${process.pid}-${Date.now()}`, 'g1', memoryMib);
    const dir = cg.dir;
    // The workload: files written from inside the cgroup (their cache is charged to it), synced so that it is clean.
    const wrote = spawnSync('/bin/sh', [
      '-c',
      `echo $$ > ${dir}/cgroup.procs && dd if=/dev/zero of=${files}/cache bs=1M count=${cacheMib} conv=fsync status=none`,
    ]);
    expect(wrote.status, wrote.stderr?.toString()).toBe(0);
    const cgroup = new KernelMemoryCgroup(dir, 1, kernelCgroupFs);
    host = await startTestHost({ dataDir: data.dir, poolSizeMib: 1024, logger: log.logger, cgroupOf: (name) => (name === 'g1' ? cgroup : null) });
    const { token } = host.service.createVm({ name: 'g1', memoryMib });
    // The shim joins the cgroup and becomes the agent: every page the agent ever touches is charged to it.
    agent = spawnAgent({ url: host.url, name: 'g1', memoryMib, cgroupDir: dir, extra: ['--token', token] });
    agentPid = agent.pid;
    await waitFor(() => host?.service.isRunning('g1'), { what: `the agent to connect (${agent?.output()})`, timeoutMs: 30_000 });
  }, 60_000);

  afterAll(async () => {
    await cleanUp(
      () => agent?.kill(),
      () => host?.close(),
      () => rmSync(files, { recursive: true, force: true }),
      () => data.remove(),
      () => cg?.remove(),
    );
  });

  it('hands the balloon off all the way, though the cache left no slack to lower the limit first', async () => {
    const dir = cg!.dir;
    const stat = (key: string) => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync(join(dir, 'memory.stat'), 'utf8'))?.[1] ?? 0) / 1024 / 1024;
    const before = { usageMib: cgroupMib(dir, 'memory.usage_in_bytes'), cacheMib: stat('total_cache'), inactiveFileMib: stat('total_inactive_file') };
    // The premise: the cache fills the cgroup, the free part of it is below the hand-off's reserve.
    expect(before.cacheMib).toBeGreaterThan(cacheMib / 2);
    const failcntBefore = cgroupNumber(dir, 'memory.failcnt');
    await host!.service.setBalloon('g1', 200);
    const settled = await waitFor(
      () => {
        const v = host!.service.vmView('g1').balloon;
        return v && v.state !== 'inflating' && v.actualMib > 0 && v;
      },
      { what: 'the balloon to settle', timeoutMs: 30_000 },
    );
    expect(settled.actualMib).toBe(200);
    const settledAtMs = Date.now();
    const releasesAtSettle = releases();
    // The hand-off completes (or stalls: then the deadline says how far it got).
    const handed = await waitFor(
      () => {
        const v = host!.service.vmView('g1').balloon;
        return v && v.handedOffMib === v.actualMib && cgroupMib(dir, 'memory.limit_in_bytes') === memoryMib - v.actualMib && v;
      },
      { what: 'the balloon to be handed off', timeoutMs: 30_000 },
    ).catch((err: Error) => {
      const now = host!.service.vmView('g1').balloon;
      throw new Error(
        `${err.message}: balloon ${JSON.stringify(now)}, limit ${cgroupMib(dir, 'memory.limit_in_bytes')} MiB, usage ${cgroupMib(dir, 'memory.usage_in_bytes').toFixed(0)} MiB, cache ${stat('total_cache').toFixed(0)} MiB`,
      );
    });
    expect(handed).toMatchObject({ targetMib: 200, actualMib: 200, handedOffMib: 200, lockedMib: 0 });
    // In batches, the limit coming down into the cache first: not chunk by chunk as the agent's own
    // allocations happen to make the kernel drop some cache (what the hand-off did when it counted
    // the cache as used: 200 round trips at best, a stall at worst).
    const releasesAfterSettle = releases() - releasesAtSettle;
    expect(releasesAfterSettle).toBeLessThanOrEqual(8);
    expect(vmLockedMib(agentPid)).toBeLessThan(2);
    expect(cgroupOomKills(dir)).toBe(0);
    console.log(
      JSON.stringify({
        before,
        after: { usageMib: cgroupMib(dir, 'memory.usage_in_bytes'), limitMib: cgroupMib(dir, 'memory.limit_in_bytes'), cacheMib: stat('total_cache') },
        failcnt: cgroupNumber(dir, 'memory.failcnt') - failcntBefore,
        settledToHandedOffMs: Date.now() - settledAtMs,
        releasesAfterSettle,
      }),
    );
  }, 90_000);
});
