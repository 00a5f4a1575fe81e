import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHost, type HostHandle } from '@memballoon/host';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { launchGuest, TestingError, UNBOUNDED_WARNING_CODE, withMemoryPressure } from './index.js';

const HOLD = fileURLToPath(new URL('./hold.fixture.mjs', import.meta.url));
const MEMORY_ROOT = '/sys/fs/cgroup/memory';
const MiB = 1024 * 1024;

/** The kernel's VmLck of a process, in MiB. */
function vmLckMib(pid: number): number {
  const m = /^VmLck:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

/** What the balloon holds by the kernel's account: pinned pages, plus what the cgroup's limit took over (memory − limit). */
function balloonByKernelMib(agentPid: number, memoryMib: number, cgroupDir: string | undefined): number {
  let handedOff = 0;
  if (cgroupDir && existsSync(`${cgroupDir}/memory.limit_in_bytes`)) {
    handedOff = Math.max(0, memoryMib - Math.round(Number(readFileSync(`${cgroupDir}/memory.limit_in_bytes`, 'utf8')) / MiB));
  }
  return vmLckMib(agentPid) + handedOff;
}

function ownCgroups(): string[] {
  return existsSync(MEMORY_ROOT) ? readdirSync(MEMORY_ROOT).filter((d) => d.startsWith(`memballoon-testing-${process.pid}-`)) : [];
}

describe('launchGuest', () => {
  it("runs the command in its own memory cgroup, squeezes it by the kernel's account, and leaves nothing behind", async () => {
    let cgroupDir: string | undefined;
    let agentPid = -1;
    {
      await using vm = await launchGuest({ memoryMib: 512, command: [process.execPath, HOLD, '32'] });
      cgroupDir = vm.cgroupDir;
      agentPid = vm.agentPid;
      expect(agentPid).toBeGreaterThan(0);
      if (vm.bounded) {
        expect(cgroupDir).toBeDefined();
        // The agent (and so the workload it started) is charged to the VM's cgroup.
        expect(readFileSync(`/proc/${agentPid}/cgroup`, 'utf8')).toContain(cgroupDir!.slice(MEMORY_ROOT.length));
        expect(Number(readFileSync(`${cgroupDir}/memory.limit_in_bytes`, 'utf8'))).toBe(512 * MiB);
      }
      const view = await vm.balloon(96);
      expect(view.balloon).toMatchObject({ targetMib: 96, actualMib: 96 });
      expect(balloonByKernelMib(agentPid, 512, cgroupDir)).toBeGreaterThanOrEqual(96);
      const back = await vm.balloon(0);
      expect(back.balloon).toMatchObject({ targetMib: 0, actualMib: 0 });
    }
    // `await using` closed it: the agent is gone, so is its cgroup and the host's parent.
    expect(existsSync(`/proc/${agentPid}`) && !readFileSync(`/proc/${agentPid}/stat`, 'utf8').includes(') Z ')).toBe(false);
    if (cgroupDir) expect(existsSync(cgroupDir)).toBe(false);
    expect(ownCgroups()).toEqual([]);
  });

  it('withMemoryPressure holds the balloon while the callback runs and gives it back even when the callback throws', async () => {
    await using vm = await launchGuest({ memoryMib: 512, command: [process.execPath, HOLD, '16'] });
    const during = await withMemoryPressure(vm, 64, async () => (await vm.info()).balloon);
    expect(during).toMatchObject({ targetMib: 64, actualMib: 64 });
    expect((await vm.info()).balloon).toMatchObject({ targetMib: 0, actualMib: 0 });

    const boom = new Error('the service under test failed');
    await expect(withMemoryPressure(vm, 48, () => Promise.reject(boom))).rejects.toBe(boom);
    expect((await vm.info()).balloon).toMatchObject({ targetMib: 0, actualMib: 0 });
  });

  it("rejects with the host's reason, and with balloon_short when the guest stops at its floor", async () => {
    await using vm = await launchGuest({ memoryMib: 320, command: [process.execPath, HOLD, '160'] });
    // The 90 % rule is the host's: refused before anything moves.
    const refused = await vm.balloon(300).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TestingError);
    expect(refused).toMatchObject({ code: 'host_refused', apiCode: 'out_of_range' });
    // 160 MiB of workload plus the agent leave far less than 250 MiB: the guest's floor stops the balloon.
    const short = await vm.balloon(250).catch((e: unknown) => e);
    expect(short).toBeInstanceOf(TestingError);
    expect(short).toMatchObject({ code: 'balloon_short' });
    expect((short as TestingError).reason).toMatch(/floor|pressure|memory/);
  });

  it('refuses bad options, and a command that does not exist leaves no VM, cgroup or data behind', async () => {
    await expect(launchGuest({ memoryMib: 8, command: ['true'] })).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(launchGuest({ memoryMib: 256, command: [] })).rejects.toMatchObject({ code: 'invalid_argument' });
    const err = await launchGuest({ memoryMib: 256, command: ['/no/such/command-memballoon'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TestingError);
    expect((err as TestingError).message).toMatch(/no\/such\/command-memballoon/);
    expect(ownCgroups()).toEqual([]);
  });

  it('says so when the host can only run a plain process tree, and refuses then if asked to', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-testing-proc-'));
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    let host: HostHandle | undefined;
    try {
      host = await startHost({
        dataDir,
        listenPort: 0,
        poolSizeMib: 1024,
        guests: { pathEnv: process.env.PATH ?? '/usr/bin:/bin', forceProcessMode: true },
      });
      process.on('warning', onWarning);
      await expect(launchGuest({ host, memoryMib: 256, command: [process.execPath, HOLD, '8'], requireCgroup: true })).rejects.toMatchObject({
        code: 'invalid_argument',
      });
      expect(host.service.listVms(false)).toEqual([]);
      await using vm = await launchGuest({ host, memoryMib: 256, command: [process.execPath, HOLD, '8'] });
      expect(vm.bounded).toBe(false);
      expect(vm.cgroupDir).toBeUndefined();
      await expect.poll(() => warnings.some((w) => (w as { code?: string }).code === UNBOUNDED_WARNING_CODE)).toBe(true);
      expect((await vm.balloon(32)).balloon).toMatchObject({ targetMib: 32, actualMib: 32 });
    } finally {
      process.off('warning', onWarning);
      await host?.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
    // The guest's VM was unregistered when it closed; the host it was given stays the caller's.
    expect(ownCgroups()).toEqual([]);
  });
});
