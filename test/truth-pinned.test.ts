// Kernel truth of a pinned balloon (an agent the host does not own: no
// hand-off, the balloon stays pinned at rest). The agent faults its chunks in
// on libuv's thread pool and mlocks them: showvminfo's lockedMib must be what
// the kernel pins for the agent (VmLck, and smaps_rollup's Locked), not more
// and not less; VmRSS grows by the balloon and comes back after a deflate; the
// guest's Free (process domain: its memory less the tree's RSS) and the agent's
// own agentRssMib follow VmRSS. Tolerances: VmLck within 2 MiB of lockedMib
// (whole 1 MiB chunks; a chunk being faulted in at the moment of the read),
// sampled figures (agentRssMib, Free: once a second) within 16 MiB of VmRSS
// (the agent's heap moves between the sample and our read), VmRSS back within
// 32 MiB of where it was before the balloon (a GC may not have run yet).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { apiGet, ctl, ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir, type Started, type StartedHost } from './support/host.js';
import { procMemory, type ProcMemory } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const POOL_MIB = 1024;
const VM_MIB = 512;
const BALLOON_MIB = 192;
/** What a fresh agent's own heap may give back between two VmRSS reads. */
const RSS_NOISE_MIB = 16;
const LOCK_TOLERANCE_MIB = 2;
const SAMPLED_TOLERANCE_MIB = 16;
const RSS_BACK_TOLERANCE_MIB = 32;
const root = process.getuid?.() === 0;

let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;
let agent: Started;
let idle: ProcMemory;

const vm = () => ctlJson<VmView>(host.url, 'showvminfo', 'p1');
const hostInfo = () => ctlJson<HostView>(host.url, 'showhostinfo');

/** smaps_rollup's Locked of a process, in MiB. */
function smapsLockedMib(pid: number): number {
  const m = /^Locked:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  if (!m?.[1]) throw new Error(`no Locked in /proc/${pid}/smaps_rollup`);
  return Number(m[1]) / 1024;
}

/** Polls until the guest's sampled figures (agentRssMib, Free) agree with the agent's VmRSS. */
async function sampledFiguresAgree(): Promise<void> {
  let last = '';
  await waitFor(
    async () => {
      const v = await vm();
      const k = procMemory(agent.proc.pid!);
      last = JSON.stringify({ stats: v.stats, kernel: k });
      const rss = Math.abs((v.stats?.agentRssMib ?? -1e9) - k.rssMib) <= SAMPLED_TOLERANCE_MIB;
      const free = Math.abs((v.stats?.freeMib ?? -1e9) - (VM_MIB - k.rssMib)) <= SAMPLED_TOLERANCE_MIB;
      return rss && free;
    },
    { what: "the guest's sampled figures to agree with VmRSS", timeoutMs: 30_000, intervalMs: 500 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${last}`);
  });
}

beforeAll(async () => {
  if (!root) return console.log('truth-pinned skipped: needs root to pin (mlock) a balloon of this size');
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: POOL_MIB, extra: ['--no-cgroups', '--policy-interval-ms', '0'] });
  expect((await ctl(host.url, 'createvm', '--name', 'p1', '--memory', String(VM_MIB))).code).toBe(0);
  agent = spawnAgent({ url: host.url, name: 'p1', memoryMib: VM_MIB });
  await waitFor(async () => (await vm()).state === 'running' && (await vm()).stats, {
    what: 'the agent to connect and report',
    timeoutMs: 30_000,
    intervalMs: 500,
  });
}, 60_000);

afterAll(async () => {
  if (!root) return;
  await cleanUp(stopAll, () => data.remove());
}, 60_000);

describe('kernel truth of a pinned balloon (unmanaged guest)', () => {
  it('idle: nothing locked in the kernel or in the figures; agentRssMib and Free follow VmRSS', async (ctx) => {
    if (!root) return ctx.skip();
    const v = await vm();
    expect(v.balloon).toMatchObject({ targetMib: 0, actualMib: 0, lockedMib: 0 });
    expect(v.pid).toBe(agent.proc.pid);
    await sampledFiguresAgree();
    idle = procMemory(agent.proc.pid!);
    expect(idle.lockedMib).toBeLessThan(LOCK_TOLERANCE_MIB);
    expect(smapsLockedMib(agent.proc.pid!)).toBeLessThan(LOCK_TOLERANCE_MIB);
  }, 60_000);

  it('inflating, lockedMib never above VmLck; at rest: lockedMib = VmLck = smaps Locked, VmRSS grew by it, the pool and metrics count it', async (ctx) => {
    if (!root) return ctx.skip();
    const r = await ctl(host.url, 'controlvm', 'p1', 'guestmemoryballoon', String(BALLOON_MIB));
    expect(r.code, r.stderr).toBe(0);
    // While it inflates, the API never claims more pinned than the kernel pins: the view is read
    // before VmLck, and VmLck only grows meanwhile (1 MiB for the rounding of kB to whole MiB).
    const overclaims: string[] = [];
    let samples = 0;
    await waitFor(
      async () => {
        const view = await apiGet<VmView>(host.url, '/vms/p1');
        const lockedMib = procMemory(agent.proc.pid!).lockedMib;
        samples++;
        if ((view.balloon?.lockedMib ?? 0) > lockedMib + 1) overclaims.push(`lockedMib ${view.balloon?.lockedMib} > VmLck ${lockedMib.toFixed(1)}`);
        return view.balloon?.actualMib === BALLOON_MIB;
      },
      { what: 'the balloon to reach its target', timeoutMs: 60_000, intervalMs: 5 },
    );
    expect(overclaims, `${samples} samples`).toEqual([]);
    console.log(`inflating ${BALLOON_MIB} MiB: ${samples} samples of lockedMib against VmLck`);
    const v = await waitFor(
      async () => {
        const now = await vm();
        return now.balloon?.actualMib === BALLOON_MIB && now.balloon.state === 'steady' && now;
      },
      { what: 'the balloon to rest at its target', timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(v.balloon).toMatchObject({ lockedMib: BALLOON_MIB, handedOffMib: 0 });
    const pid = agent.proc.pid!;
    // At rest: the kernel's pinned pages settle at the balloon (no fault-in still running).
    const k = await waitFor(
      () => {
        const now = procMemory(pid);
        return Math.abs(now.lockedMib - BALLOON_MIB) <= LOCK_TOLERANCE_MIB && now;
      },
      { what: `VmLck to be the balloon (${BALLOON_MIB} MiB)`, timeoutMs: 30_000 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}: VmLck ${procMemory(pid).lockedMib} MiB`);
    });
    expect(Math.abs(smapsLockedMib(pid) - BALLOON_MIB)).toBeLessThanOrEqual(LOCK_TOLERANCE_MIB);
    // VmRSS grows by the balloon, less what a GC of the young agent's start-up
    // garbage gave back meanwhile (seen: 7 MiB with two suites running); the
    // pinned pages themselves are checked exactly above (VmLck, smaps Locked).
    expect(k.rssMib - idle.rssMib).toBeGreaterThanOrEqual(BALLOON_MIB - RSS_NOISE_MIB);
    await sampledFiguresAgree();
    const h = await hostInfo();
    expect(h.pool).toEqual({ sizeMib: POOL_MIB, heldMib: VM_MIB - BALLOON_MIB, reclaimedMib: BALLOON_MIB, freeMib: POOL_MIB - VM_MIB + BALLOON_MIB });
    const rows = await ctlJson<{ object: string; metric: string; valueKib: number }[]>(host.url, 'metrics', 'query');
    const byName = Object.fromEntries(rows.map((row) => [`${row.object}:${row.metric}`, row.valueKib / 1024]));
    expect(byName['p1:Guest/RAM/Usage/Balloon']).toBe(BALLOON_MIB);
    expect(byName['host:RAM/VMM/Ballooned']).toBe(BALLOON_MIB);
    expect(byName['host:RAM/VMM/Used']).toBe(VM_MIB - BALLOON_MIB);
  }, 120_000);

  it('deflated: VmLck back to ~0, VmRSS back near idle, the figures follow', async (ctx) => {
    if (!root) return ctx.skip();
    const r = await ctl(host.url, 'controlvm', 'p1', 'guestmemoryballoon', '0', '--wait');
    expect(r.code, r.stderr).toBe(0);
    const pid = agent.proc.pid!;
    await waitFor(async () => (await vm()).balloon?.actualMib === 0, { what: 'the balloon to deflate', timeoutMs: 60_000, intervalMs: 500 });
    expect((await vm()).balloon).toMatchObject({ actualMib: 0, lockedMib: 0 });
    await waitFor(() => procMemory(pid).lockedMib < LOCK_TOLERANCE_MIB, { what: 'VmLck to fall after the deflate', timeoutMs: 30_000 }).catch((err: Error) => {
      throw new Error(`${err.message}: VmLck ${procMemory(pid).lockedMib} MiB`);
    });
    expect(smapsLockedMib(pid)).toBeLessThan(LOCK_TOLERANCE_MIB);
    await waitFor(() => procMemory(pid).rssMib < idle.rssMib + RSS_BACK_TOLERANCE_MIB, { what: 'VmRSS to come back', timeoutMs: 30_000 }).catch(
      (err: Error) => {
        throw new Error(`${err.message}: VmRSS ${procMemory(pid).rssMib} MiB, idle ${idle.rssMib} MiB`);
      },
    );
    await sampledFiguresAgree();
    expect((await hostInfo()).pool).toEqual({ sizeMib: POOL_MIB, heldMib: VM_MIB, reclaimedMib: 0, freeMib: POOL_MIB - VM_MIB });
  }, 120_000);
});
