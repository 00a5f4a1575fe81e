// End to end with real processes: balloon-host, balloon-agent and balloonctl.
// Memory claims are checked against the kernel (VmRSS and VmLck of the agent), not the
// host's bookkeeping.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { ctl, ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir, type Started, type StartedHost } from './support/host.js';
import { balloonGrowthMib, balloonShare, isAlive, procMemory, vmLockedMib, vmRssMib } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;

beforeAll(async () => {
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: 2048 });
});
afterAll(async () => {
  await cleanUp(stopAll, () => data.remove());
});

const vm = (name: string) => ctlJson<VmView>(host.url, 'showvminfo', name);

async function startGuest(name: string, memoryMib: number): Promise<Started> {
  const agent = spawnAgent({ url: host.url, name, memoryMib, floorMib: 16 });
  await waitFor(async () => (await vm(name)).state === 'running', { what: `VM '${name}' to run`, timeoutMs: 20_000 });
  return agent;
}

describe('balloonctl and a real agent', () => {
  it('applies the default balloon at start: the agent VmRSS grows by it', async () => {
    expect((await ctl(host.url, 'createvm', '--name', 'dflt', '--memory', '512')).code).toBe(0);
    // Baseline: the same agent without a balloon.
    const bare = await startGuest('dflt', 512);
    const baseRssMib = await waitFor(() => {
      const r = vmRssMib(bare.pid);
      return r > 20 ? r : undefined;
    });
    await bare.stop();
    await waitFor(async () => (await vm('dflt')).state === 'poweroff', { what: 'the VM to stop' });
    const mod = await ctl(host.url, 'modifyvm', 'dflt', '--guestmemoryballoon', '192');
    expect(mod).toMatchObject({ code: 0, stderr: '' });
    const agent = await startGuest('dflt', 512);
    await waitFor(async () => (await vm('dflt')).balloon?.actualMib === 192, { what: 'the default balloon to be applied' });
    const rss = vmRssMib(agent.pid);
    expect(rss - baseRssMib).toBeGreaterThan(192 * 0.9);
    const info = await vm('dflt');
    expect(info).toMatchObject({ name: 'dflt', state: 'running', memoryMib: 512, defaultBalloonMib: 192, pageFusion: false, pid: agent.pid });
    expect(info.balloon).toMatchObject({ targetMib: 192, actualMib: 192 });
    expect(info.heldMib).toBe(512 - 192);
    // What the host shows as pinned is what the kernel pins for the agent (VmLck).
    // Where mlock is not permitted (not root, no CAP_IPC_LOCK) nothing is claimed.
    const pinned = info.balloon?.lock === 'locked';
    expect(info.balloon?.lockedMib).toBe(pinned ? 192 : 0);
    expect(vmLockedMib(agent.pid)).toBeGreaterThanOrEqual(pinned ? 192 : 0);
    await agent.stop();
  });

  it('controlvm moves the balloon up and down and VmRSS follows; refuses the 90 % rule and modifyvm while running', async () => {
    expect((await ctl(host.url, 'createvm', '--name', 'ctl vm', '--memory', '400')).code).toBe(0);
    const agent = await startGuest('ctl vm', 400);
    // Against what the kernel pins (VmLck; VmRSS where it cannot pin): the fresh agent's VmRSS also falls by its start-up garbage meanwhile.
    const mem0 = procMemory(agent.pid);
    const up = await ctl(host.url, 'controlvm', 'ctl vm', 'guestmemoryballoon', '256', '--wait', '--timeout', '30');
    expect(up.code).toBe(0);
    // The result on stdout, the progress on stderr (scripts read stdout).
    expect(up.stdout).toBe("VM 'ctl vm': balloon at 256 MiB\n");
    expect(up.stderr).toMatch(/^VM 'ctl vm': balloon \d+\/256 MiB$/m);
    const pinned = (await vm('ctl vm')).balloon?.lock === 'locked';
    expect(balloonGrowthMib(agent.pid, mem0, pinned)).toBeGreaterThan(256 * balloonShare(pinned));
    const memUp = procMemory(agent.pid);

    const down = await ctl(host.url, 'controlvm', 'ctl vm', 'guestmemoryballoon', '32', '--wait');
    expect(down.code).toBe(0);
    await waitFor(() => -balloonGrowthMib(agent.pid, memUp, pinned) > 224 * balloonShare(pinned), {
      what: 'the pinned balloon (VmLck) to fall after the deflate',
    });
    expect((await vm('ctl vm')).balloon?.actualMib).toBe(32);

    const tooBig = await ctl(host.url, 'controlvm', 'ctl vm', 'guestmemoryballoon', '360');
    expect(tooBig.code).not.toBe(0);
    expect(tooBig.stderr.trim()).toBe(
      "balloonctl: error: a balloon of 360 MiB is 90 % or more of the memory of VM 'ctl vm' (400 MiB): the largest allowed is 359 MiB",
    );
    const negative = await ctl(host.url, 'controlvm', 'ctl vm', 'guestmemoryballoon', '-5');
    expect(negative.code).not.toBe(0);
    expect(negative.stderr).toMatch(/guestmemoryballoon needs a whole number of MiB/);

    const modify = await ctl(host.url, 'modifyvm', 'ctl vm', '--memory', '800');
    expect(modify.code).not.toBe(0);
    expect(modify.stderr.trim()).toBe("balloonctl: error: VM 'ctl vm' is running: modifyvm needs the VM powered off (to change memoryMib)");
    // Policy settings steer rather than resize: allowed while running.
    expect((await ctl(host.url, 'modifyvm', 'ctl vm', '--memory-weight', '300')).code).toBe(0);
    const unreg = await ctl(host.url, 'unregistervm', 'ctl vm');
    expect(unreg.stderr).toMatch(/is running: unregistervm needs the VM powered off/);

    const host0 = await ctlJson<HostView>(host.url, 'showhostinfo');
    expect(host0.pool.heldMib + host0.pool.freeMib).toBe(host0.pool.sizeMib);
    expect(host0.pool.reclaimedMib).toBe(32);
    await agent.stop();
    const off = await ctl(host.url, 'controlvm', 'ctl vm', 'guestmemoryballoon', '10');
    expect(off.stderr).toMatch(/VM 'ctl vm' is not running/);
  }, 180_000); // a dozen balloonctl runs and two agent start-ups: a generous deadline on a busy machine

  it('controlvm --wait fails with the guest reason when the balloon stops short', async () => {
    expect((await ctl(host.url, 'createvm', '--name', 'tight', '--memory', '300')).code).toBe(0);
    // The agent's default floor (64 MiB) plus its own footprint leave less
    // than 269 MiB for a balloon in a 300 MiB guest: the agent stops (floor)
    // or gives memory back (pressure), and says why.
    const agent = spawnAgent({ url: host.url, name: 'tight', memoryMib: 300 });
    await waitFor(async () => (await vm('tight')).state === 'running', { what: "VM 'tight' to run", timeoutMs: 20_000 });
    const r = await ctl(host.url, 'controlvm', 'tight', 'guestmemoryballoon', '269', '--wait', '--timeout', '30');
    expect(r.code).not.toBe(0);
    // Progress lines first (stderr), the reason last.
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(
      /^balloonctl: error: VM 'tight': the balloon stopped short at \d+ of 269 MiB: (inflating further would cross the guest's free-memory floor|the guest ran short of memory and deflated by itself|the guest could not allocate more memory)$/,
    );
    const info = await vm('tight');
    expect(info.balloon).toMatchObject({ targetMib: 269, state: 'short' });
    expect(['guest_floor', 'guest_pressure', 'out_of_memory']).toContain(info.balloon!.reason);
    expect(info.balloon!.actualMib).toBeLessThan(269);
    await agent.stop();
  });

  it('names bad input clearly', async () => {
    const unknown = await ctl(host.url, 'showvminfo', 'ghost');
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr.trim()).toBe("balloonctl: error: Could not find a registered machine named 'ghost'");
    expect((await ctl(host.url, 'controlvm', 'ghost', 'guestmemoryballoon', '1')).stderr).toMatch(/Could not find a registered machine named 'ghost'/);
    expect((await ctl(host.url, 'createvm', '--name', 'huge', '--memory', '99999999999')).stderr).toMatch(/memoryMib 99999999999 MiB is out of range/);
    expect((await ctl(host.url, 'createvm', '--name', ' bad', '--memory', '10')).stderr).toMatch(/may not start or end with a space/);
    expect((await ctl(host.url, 'frobnicate')).stderr).toMatch(/unknown command 'frobnicate'/);
    const dead = await ctl('http://127.0.0.1:1', 'list', 'vms');
    expect(dead.code).not.toBe(0);
    expect(dead.stderr).toMatch(/cannot reach the host at http:\/\/127.0.0.1:1/);
    expect(dead.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('keeps the registry across a host restart', async () => {
    expect((await ctl(host.url, 'createvm', '--name', 'keep', '--memory', '640')).code).toBe(0);
    expect((await ctl(host.url, 'modifyvm', 'keep', '--guestmemoryballoon', '64', '--pagefusion', 'on')).code).toBe(0);
    const before = await ctlJson<VmView[]>(host.url, 'list', 'vms');
    const pid = host.pid;
    expect(await host.stop()).toBe(0);
    expect(isAlive(pid)).toBe(false);
    host = await spawnHost({ dataDir: data.dir, poolSizeMib: 2048 });
    const after = await ctlJson<VmView[]>(host.url, 'list', 'vms');
    expect(after.map((v) => [v.name, v.memoryMib, v.defaultBalloonMib, v.pageFusion, v.memoryWeight])).toEqual(
      before.map((v) => [v.name, v.memoryMib, v.defaultBalloonMib, v.pageFusion, v.memoryWeight]),
    );
    expect(after.find((v) => v.name === 'keep')).toMatchObject({ memoryMib: 640, defaultBalloonMib: 64, pageFusion: true, state: 'poweroff' });
  });
});
