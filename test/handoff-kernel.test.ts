// The hand-off end to end on the real kernel: a host (in this process) and a
// real balloon-agent process inside a v1 memory cgroup the test made. The
// host inflates the balloon, lowers the cgroup's limit and has the agent
// release the pinned pages: the kernel's files (limit, usage, VmLck) must
// show the memory physically free, while the balloon still reports its size.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelMemoryCgroup, kernelCgroupFs, type HostHandle } from '@memballoon/host';
import { cgroupMib, cgroupNumber, cgroupOomKills, cgroupV1SkipReason, makeV1Cgroup, vmLockedMib, waitFor, type TestCgroup } from './support/index.js';
import { BIN, stopAll, tempDataDir } from './support/host.js';
import { startTestHost } from './support/in-process-host.js';
import { cleanUp } from './support/cleanup.js';

const skipReason = cgroupV1SkipReason();
if (skipReason) console.log(`skipping the hand-off kernel e2e: ${skipReason}`);

describe.skipIf(skipReason !== '')('hand-off on the real kernel (balloon-agent in a v1 memory cgroup)', () => {
  const memoryMib = 512;
  let cg: TestCgroup;
  let dir = '';
  const readMib = cgroupMib;
  const data = tempDataDir();
  let host: HostHandle;
  let agentPid = 0;
  let agent: ReturnType<typeof spawn> | null = null;
  let output = '';

  beforeAll(async () => {
    cg = makeV1Cgroup(`memballoon-test-handoff-e2e-${process.pid}-${Date.now()}`, 'g1', memoryMib);
    dir = cg.dir;
    const cgroup = new KernelMemoryCgroup(dir, 1, kernelCgroupFs);
    host = await startTestHost({
      dataDir: data.dir,
      poolSizeMib: 1024,
      cgroupOf: (name) => (name === 'g1' ? cgroup : null),
    });
    const { token } = host.service.createVm({ name: 'g1', memoryMib });
    // The shell joins the cgroup and becomes the agent: every page the agent
    // ever touches is charged to it.
    agent = spawn(
      '/bin/sh',
      [
        '-c',
        `echo $$ > ${dir}/cgroup.procs && exec "$0" "$@"`,
        process.execPath,
        BIN.agent,
        '--host',
        host.url,
        '--name',
        'g1',
        '--domain',
        'cgroup',
        '--log-level',
        'info',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, MEMBALLOON_TOKEN: token },
      },
    );
    agent.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    agent.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    agentPid = agent.pid!;
    await waitFor(() => host.service.isRunning('g1'), { what: `the agent to connect (${output})`, timeoutMs: 30_000 });
  });

  afterAll(async () => {
    await cleanUp(
      async () => {
        if (agent && agent.exitCode === null && agent.signalCode === null) {
          const exited = new Promise((r) => agent!.once('exit', r));
          agent.kill('SIGKILL');
          await exited;
        }
      },
      () => host?.close(),
      stopAll,
      () => data?.remove(),
      () => cg?.remove(),
    );
  });

  it('hands 256 MiB off: limit = memory − 256, cgroup usage back where it was, VmLck ~0, failcnt 0, no OOM; the balloon still reports 256; a deflate raises the limit', async () => {
    const usageBefore = readMib(dir, 'memory.usage_in_bytes');
    // The host hands off while the balloon inflates: the balloon's pages are
    // charged and released in turns, so what the kernel shows at its peak is
    // the pinned part not handed off yet.
    let peakUsage = usageBefore;
    let peakLocked = 0;
    const off = host.service.subscribe(() => {
      peakUsage = Math.max(peakUsage, readMib(dir, 'memory.usage_in_bytes'));
      peakLocked = Math.max(peakLocked, host.service.vmView('g1').balloon?.lockedMib ?? 0);
    });
    await host.service.setBalloon('g1', 256);
    const b = await waitFor(
      () => {
        const v = host.service.vmView('g1').balloon;
        return v && v.handedOffMib === 256 && v;
      },
      { what: 'the balloon to be handed off', timeoutMs: 30_000 },
    );
    await host.service.handOffsIdle();
    off();
    expect(b).toMatchObject({ targetMib: 256, actualMib: 256, handedOffMib: 256, lockedMib: 0 });
    // The kernel's word: the limit came down by the balloon, and the cgroup
    // holds what it held before the balloon: under a limit of 256 MiB the
    // agent cannot keep 256 MiB resident besides itself, so the pages left.
    expect(readMib(dir, 'memory.limit_in_bytes')).toBe(memoryMib - 256);
    const usageAfter = readMib(dir, 'memory.usage_in_bytes');
    expect(usageAfter - usageBefore).toBeLessThan(16);
    // The balloon was really pinned and charged on its way (some of it at a time).
    expect(peakLocked).toBeGreaterThan(0);
    expect(peakUsage - usageBefore).toBeGreaterThan(peakLocked - 8);
    expect(vmLockedMib(agentPid)).toBeLessThan(2);
    expect(cgroupNumber(dir, 'memory.failcnt')).toBe(0);
    expect(cgroupOomKills(dir)).toBe(0);
    // The pool counts it as reclaimed: the limit holds it.
    expect(host.service.hostView()).toMatchObject({ reclaim: 'physical', pool: { reclaimedMib: 256 } });
    console.log(
      `hand-off 256 MiB: cgroup usage ${usageBefore.toFixed(0)} -> peak ${peakUsage.toFixed(0)} (pinned at most ${peakLocked} MiB at once) -> handed off ${usageAfter.toFixed(0)} MiB, limit ${readMib(dir, 'memory.limit_in_bytes')} MiB, VmLck ${vmLockedMib(agentPid)} MiB`,
    );

    await host.service.setBalloon('g1', 0);
    await waitFor(() => readMib(dir, 'memory.limit_in_bytes') === memoryMib, { what: 'the limit to come back up' });
    expect(host.service.vmView('g1').balloon).toMatchObject({ actualMib: 0, handedOffMib: 0 });
    // No page work: the usage did not grow back.
    expect(readMib(dir, 'memory.usage_in_bytes')).toBeLessThan(usageAfter + 16);
  });

  it("a balloon up to the guest's floor (little slack: batches while it inflates are small): no failcnt, no OOM kill, the limit ends at memory − balloon", async () => {
    const failcntBefore = cgroupNumber(dir, 'memory.failcnt');
    // More than the floor allows: the agent stops at its floor (guest_floor), the tightest a hand-off meets.
    await host.service.setBalloon('g1', 460);
    const b = await waitFor(
      () => {
        const v = host.service.vmView('g1').balloon;
        return v && v.state !== 'inflating' && v.actualMib > 0 && v.handedOffMib === v.actualMib && v;
      },
      { what: 'the balloon to settle and be handed off', timeoutMs: 30_000 },
    );
    await host.service.handOffsIdle();
    expect(b.actualMib).toBeGreaterThan(300);
    // Still short at the floor after the hand-off (the agent's answers used to call it steady).
    expect(b).toMatchObject({ state: 'short', reason: 'guest_floor' });
    expect(cgroupMib(dir, 'memory.limit_in_bytes')).toBe(memoryMib - b.actualMib);
    expect(cgroupMib(dir, 'memory.usage_in_bytes')).toBeLessThanOrEqual(memoryMib - b.actualMib);
    expect(cgroupNumber(dir, 'memory.failcnt')).toBe(failcntBefore);
    expect(cgroupOomKills(dir)).toBe(0);
    expect(vmLockedMib(agentPid)).toBeLessThan(2);
    console.log(
      `floor-bound balloon: ${b.actualMib} MiB (${b.state}, ${b.reason}), limit ${cgroupMib(dir, 'memory.limit_in_bytes')} MiB, usage ${cgroupMib(dir, 'memory.usage_in_bytes').toFixed(0)} MiB`,
    );
    await host.service.setBalloon('g1', 0);
    await waitFor(() => cgroupMib(dir, 'memory.limit_in_bytes') === memoryMib, { what: 'the limit to come back up' });
  });

  it('agent killed -9 after a hand-off: the limit it leaves behind is never below memory − target', async () => {
    await host.service.setBalloon('g1', 200);
    await waitFor(() => host.service.vmView('g1').balloon?.handedOffMib === 200, { what: 'the second hand-off', timeoutMs: 30_000 });
    await host.service.handOffsIdle();
    const exited = new Promise((r) => agent!.once('exit', r));
    agent!.kill('SIGKILL');
    await exited;
    await waitFor(() => !host.service.isRunning('g1'), { what: 'the session to end' });
    expect(readMib(dir, 'memory.limit_in_bytes')).toBeGreaterThanOrEqual(memoryMib - 200);
    expect(cgroupNumber(dir, 'memory.failcnt')).toBe(0);
    expect(cgroupOomKills(dir)).toBe(0);
  });
});
