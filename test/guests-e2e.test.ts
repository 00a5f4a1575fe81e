// Host-managed guests on the real kernel (issue 13): three guests started with
// startvm under a pool cgroup, each in its own memory cgroup with the VM's
// memory as its limit, agent and workload inside; poweroff removes them and
// returns the quota; the agent killed -9 powers its VM off; the host killed -9
// and restarted re-adopts the guests that still run and removes the cgroups of
// those that do not; a command that does not exist leaves nothing behind.
// Needs root and a memory controller; skips with a printed reason otherwise.
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryCgroupOfProc, type HostView, type VmView } from '@memballoon/host';
import { ctl, ctlJson, spawnHost, stopAll, tempDataDir, type StartedHost } from './support/host.js';
import { cgroupProcs, limitFileOf, openTestHierarchy, testCgroupName, type TestHierarchy } from './support/memory-hierarchy.js';
import { freePort } from './support/ports.js';
import { isAlive } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const MiB = 1024 * 1024;
const POOL_MIB = 1536;
const VM_MIB = 384;
const BALLOON_MIB = 64;
const NAMES = ['g1', 'g2', 'g3'] as const;
const PARENT = testCgroupName();

let cg: TestHierarchy = { skipReason: '', root: '', version: 1 };
let data: ReturnType<typeof tempDataDir>;
let port: number;
let host: StartedHost;

const parentDir = () => join(cg.root, PARENT);
const limitFile = (dir: string) => limitFileOf(dir, cg.version);
const procsOf = cgroupProcs;
const cgroupOfPid = (pid: number) => `${cg.root}${memoryCgroupOfProc(readFileSync(`/proc/${pid}/cgroup`, 'utf8'), cg.version)}`;
const cmdlineOf = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
};
const vm = (name: string) => ctlJson<VmView>(host.url, 'showvminfo', name);
const hostInfo = () => ctlJson<HostView>(host.url, 'showhostinfo');
const startHostOnPort = () =>
  spawnHost({
    dataDir: data.dir,
    poolSizeMib: POOL_MIB,
    extra: ['--listen', `127.0.0.1:${port}`, '--cgroup-parent', PARENT, '--pool-cgroup', '--policy-interval-ms', '0', '--poweroff-grace-ms', '5000'],
  });

/** The workload of a guest: the `sleep` process in its cgroup. */
function workloadPid(dir: string): number | undefined {
  return procsOf(dir).find((pid) => cmdlineOf(pid)[0] === 'sleep');
}

async function startvm(name: string, user?: string): Promise<VmView> {
  const r = await ctl(host.url, 'startvm', name, '--type', 'headless', ...(user ? ['--user', user] : []), '--', 'sleep', '600');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return vm(name);
}

beforeAll(async () => {
  cg = await openTestHierarchy(PARENT);
  if (cg.skipReason) return console.log(`guests e2e skipped: ${cg.skipReason}`);
  data = tempDataDir();
  port = await freePort();
  host = await startHostOnPort();
  for (const name of NAMES) expect((await ctl(host.url, 'createvm', '--name', name, '--memory', String(VM_MIB))).code).toBe(0);
}, 60_000);

afterAll(async () => {
  if (cg.skipReason) return;
  await cleanUp(stopAll, cleanParent, () => data.remove());
}, 60_000);

async function cleanParent(): Promise<void> {
  // Whatever a failed test left: no process, no cgroup survives the file.
  if (existsSync(parentDir())) {
    for (const child of readdirSync(parentDir(), { withFileTypes: true }).filter((d) => d.isDirectory())) {
      const dir = join(parentDir(), child.name);
      for (const pid of procsOf(dir)) process.kill(pid, 'SIGKILL');
      await waitFor(() => procsOf(dir).length === 0, { what: `${dir} to empty`, timeoutMs: 20_000 });
      rmdirSync(dir);
    }
    rmdirSync(parentDir());
  }
}

describe('host-managed guests (real kernel)', () => {
  it('startvm runs three guests, each in its cgroup under the pool cgroup, agent and workload inside', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    // g2 has a default balloon: the host applies it as at every start.
    expect((await ctl(host.url, 'modifyvm', 'g2', '--guestmemoryballoon', String(BALLOON_MIB))).code).toBe(0);
    // g3 runs unprivileged (--user): its shim moves itself in with the cgroup.procs the host gave it.
    for (const name of NAMES) await startvm(name, name === 'g3' ? 'nobody' : undefined);
    // The default balloon is applied, then handed off to g2's limit (issue 14): wait for both.
    const g2 = await waitFor(
      async () => {
        const v = await vm('g2');
        return v.balloon?.actualMib === BALLOON_MIB && v.balloon.handedOffMib === BALLOON_MIB ? v : undefined;
      },
      { what: "g2's default balloon, handed off", timeoutMs: 60_000 },
    );
    expect(g2.balloon!.targetMib).toBe(BALLOON_MIB);
    expect(Number(readFileSync(limitFile(parentDir()), 'utf8'))).toBe(POOL_MIB * MiB);
    for (const name of NAMES) {
      const v = await vm(name);
      const dir = join(parentDir(), name);
      expect(v.state).toBe('running');
      expect(v.managed).toMatchObject({ managedBy: 'startvm', cgroup: dir, logFile: join(data.dir, 'logs', `${name}.log`), command: ['sleep', '600'] });
      // Each limit is the VM's memory, less what its balloon handed off (g2's default balloon).
      expect(Number(readFileSync(limitFile(dir), 'utf8'))).toBe((VM_MIB - (name === 'g2' ? BALLOON_MIB : 0)) * MiB);
      // The pid the guest reports is the agent the host started, and the kernel puts it in the VM's cgroup.
      expect(v.pid).toBe(v.managed!.agentPid);
      expect(cgroupOfPid(v.pid!)).toBe(dir);
      const workload = await waitFor(() => workloadPid(dir), { what: `the workload of ${name}` });
      expect(cgroupOfPid(workload)).toBe(dir);
      const uid = (pid: number) => /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
      expect([uid(v.pid!), uid(workload)]).toEqual(name === 'g3' ? ['65534', '65534'] : ['0', '0']);
      // The agent's memory is charged to the VM from its first page (moved in before exec).
      expect(Number(readFileSync(join(dir, cg.version === 1 ? 'memory.usage_in_bytes' : 'memory.current'), 'utf8'))).toBeGreaterThan(16 * MiB);
    }
    // The children's limits never sum above the pool cgroup's (the kernel holds the pool's invariant).
    const sumOfLimits = NAMES.reduce((sum, name) => sum + Number(readFileSync(limitFile(join(parentDir(), name)), 'utf8')), 0);
    expect(sumOfLimits).toBeLessThanOrEqual(POOL_MIB * MiB);
    const h = await hostInfo();
    expect(h).toMatchObject({ guests: 'cgroup', reclaim: 'physical', poolCgroup: true, cgroupParent: parentDir() });
    expect(h.guestsDetail).toMatch(/memory controller/);
    expect(h.pool.heldMib).toBe(3 * VM_MIB - BALLOON_MIB);
  }, 180_000);

  it('poweroff stops the agent and the workload, removes the cgroup and returns the quota', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    const before = await vm('g3');
    const dir = before.managed!.cgroup!;
    const workload = workloadPid(dir)!;
    const r = await ctl(host.url, 'controlvm', 'g3', 'poweroff');
    expect(r.code).toBe(0);
    expect(existsSync(dir)).toBe(false);
    expect(isAlive(before.pid!)).toBe(false);
    expect(isAlive(workload)).toBe(false);
    expect((await vm('g3')).state).toBe('poweroff');
    expect((await hostInfo()).pool.heldMib).toBe(2 * VM_MIB - BALLOON_MIB);
    // The agent deflated and said goodbye (SIGTERM first, not a kill).
    expect(readFileSync(before.managed!.logFile!, 'utf8')).toMatch(/SIGTERM: deflating and saying goodbye/);
  }, 60_000);

  it('the agent killed -9: the VM powers off, the workload is stopped, the cgroup removed', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    const before = await vm('g2');
    const dir = before.managed!.cgroup!;
    const workload = workloadPid(dir)!;
    process.kill(before.pid!, 'SIGKILL');
    await waitFor(async () => (await vm('g2')).state === 'poweroff', { what: 'g2 to power off', timeoutMs: 30_000 });
    await waitFor(() => !existsSync(dir), { what: `${dir} to be removed`, timeoutMs: 30_000 });
    expect(isAlive(workload)).toBe(false);
    expect((await hostInfo()).pool.heldMib).toBe(VM_MIB);
  }, 60_000);

  it('the host killed -9 and restarted: re-adopts the guest that runs, removes the cgroup of the one that died', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    await startvm('g2');
    const g1 = await vm('g1');
    const g2 = await vm('g2');
    const g2Dir = g2.managed!.cgroup!;
    await host.kill();
    // While the host is down, g2 dies entirely; g1 keeps running.
    for (const pid of procsOf(g2Dir)) process.kill(pid, 'SIGKILL');
    await waitFor(() => procsOf(g2Dir).length === 0, { what: 'g2 to die' });
    expect(isAlive(g1.pid!)).toBe(true);

    host = await startHostOnPort();
    await waitFor(() => !existsSync(g2Dir), { what: "the dead guest's cgroup to be removed", timeoutMs: 30_000 });
    // g1's agent reconnects by itself, with the launch token the host wrote down.
    const back = await waitFor(
      async () => {
        const v = await vm('g1');
        return v.state === 'running' ? v : undefined;
      },
      { what: 'g1 to reconnect', timeoutMs: 60_000 },
    );
    expect(back.pid).toBe(g1.pid);
    expect(back.managed).toMatchObject({ managedBy: 'startvm', cgroup: g1.managed!.cgroup });
    expect((await vm('g2')).state).toBe('poweroff');
    expect((await hostInfo()).pool.heldMib).toBe(VM_MIB);

    // The re-adopted guest powers off like any other.
    expect((await ctl(host.url, 'controlvm', 'g1', 'poweroff')).code).toBe(0);
    expect(existsSync(g1.managed!.cgroup!)).toBe(false);
    expect(isAlive(g1.pid!)).toBe(false);
    expect((await hostInfo()).pool.heldMib).toBe(0);
  }, 180_000);

  it('a command that does not exist: startvm fails with one clear line and leaves nothing behind', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    const r = await ctl(host.url, 'startvm', 'g3', '--', 'no-such-command-memballoon');
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no-such-command-memballoon.*not found/);
    expect(existsSync(join(parentDir(), 'g3'))).toBe(false);
    expect(existsSync(join(data.dir, 'guests', 'g3.json'))).toBe(false);
    expect((await vm('g3')).state).toBe('poweroff');
    for (const [args, message] of [
      [['startvm', 'g3'], /needs a command after --/],
      [['startvm', 'g3', '--type', 'gui', '--', 'sleep', '1'], /--type takes only 'headless'/],
      [['controlvm', 'g3', 'poweroff'], /VM 'g3' is not running/],
    ] as const) {
      const bad = await ctl(host.url, ...args);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(message);
    }
  }, 60_000);
});
