// The hand-off end to end on the real kernel: a host (in this process) and a
// real balloon-agent process inside a v1 memory cgroup the test made. The
// host inflates the balloon, lowers the cgroup's limit and has the agent
// release the pinned pages: the kernel's files (limit, usage, VmLck) must
// show the memory physically free, while the balloon still reports its size.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelMemoryCgroup, kernelCgroupFs, startHost, type HostHandle } from '@memballoon/host';
import { vmLockedMib, waitFor } from './support/index.js';
import { BIN, stopAll, tempDataDir } from './support/host.js';

const MIB = 1024 * 1024;
const V1 = '/sys/fs/cgroup/memory';
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root to make memory cgroups'
    : !existsSync(join(V1, 'memory.usage_in_bytes'))
      ? `no cgroup v1 memory controller at ${V1}`
      : '';
if (skipReason) console.log(`skipping the hand-off kernel e2e: ${skipReason}`);

const readMib = (dir: string, file: string): number => Number(readFileSync(join(dir, file), 'utf8')) / MIB;

describe.skipIf(skipReason !== '')('hand-off on the real kernel (balloon-agent in a v1 memory cgroup)', () => {
  const parent = join(V1, `memballoon-test-handoff-e2e-${process.pid}-${Date.now()}`);
  const dir = join(parent, 'g1');
  const memoryMib = 512;
  const data = tempDataDir();
  let host: HostHandle;
  let agentPid = 0;
  let agent: ReturnType<typeof spawn> | null = null;
  let output = '';

  beforeAll(async () => {
    mkdirSync(parent);
    mkdirSync(dir);
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(memoryMib * MIB));
    const cgroup = new KernelMemoryCgroup(dir, 1, kernelCgroupFs);
    host = await startHost({
      listenPort: 0,
      dataDir: data.dir,
      poolSizeMib: 1024,
      policyIntervalMs: 0,
      dashboard: false,
      fusion: false,
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
    if (agent && agent.exitCode === null && agent.signalCode === null) {
      const exited = new Promise((r) => agent!.once('exit', r));
      agent.kill('SIGKILL');
      await exited;
    }
    await host?.close();
    await stopAll();
    data.remove();
    for (const d of [dir, parent]) {
      await waitFor(
        () => {
          rmdirSync(d);
          return true;
        },
        { what: `removing ${d}` },
      );
    }
  });

  it('hands 256 MiB off: limit = memory − 256, usage drops by ~256, VmLck ~0, the balloon still reports 256; a deflate raises the limit', async () => {
    const usageBefore = readMib(dir, 'memory.usage_in_bytes');
    let pinnedUsage = 0;
    host.service.subscribe(() => {
      const b = host.service.vmView('g1').balloon;
      if (b && b.actualMib === 256 && b.handedOffMib === 0) pinnedUsage = Math.max(pinnedUsage, readMib(dir, 'memory.usage_in_bytes'));
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
    expect(b).toMatchObject({ targetMib: 256, actualMib: 256, handedOffMib: 256, lockedMib: 0 });
    // The kernel's word: the limit came down by the balloon, the pages left the cgroup.
    expect(readMib(dir, 'memory.limit_in_bytes')).toBe(memoryMib - 256);
    const usageAfter = readMib(dir, 'memory.usage_in_bytes');
    expect(pinnedUsage - usageBefore).toBeGreaterThan(240);
    expect(pinnedUsage - usageAfter).toBeGreaterThan(240);
    expect(vmLockedMib(agentPid)).toBeLessThan(2);
    expect(Number(readFileSync(join(dir, 'memory.failcnt'), 'utf8'))).toBe(0);
    // The pool counts it as reclaimed: the limit holds it.
    expect(host.service.hostView()).toMatchObject({ reclaim: 'physical', pool: { reclaimedMib: 256 } });
    console.log(
      `hand-off 256 MiB: cgroup usage ${usageBefore.toFixed(0)} -> pinned ${pinnedUsage.toFixed(0)} -> handed off ${usageAfter.toFixed(0)} MiB, limit ${readMib(dir, 'memory.limit_in_bytes')} MiB, VmLck ${vmLockedMib(agentPid)} MiB`,
    );

    await host.service.setBalloon('g1', 0);
    await waitFor(() => readMib(dir, 'memory.limit_in_bytes') === memoryMib, { what: 'the limit to come back up' });
    expect(host.service.vmView('g1').balloon).toMatchObject({ actualMib: 0, handedOffMib: 0 });
    // No page work: the usage did not grow back.
    expect(readMib(dir, 'memory.usage_in_bytes')).toBeLessThan(usageAfter + 16);
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
    expect(readMib(dir, 'memory.failcnt')).toBe(0);
  });
});
