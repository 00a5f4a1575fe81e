// Kernel truth of the figures a user reads about a guest the host started
// (startvm, real v1 memory cgroup under a pool cgroup): balloonctl
// showvminfo/showhostinfo (--json and --machinereadable) and the metrics
// (Guest/RAM/Usage/*, RAM/VMM/*) against the VM cgroup's limit, usage and
// memory.stat, the pool cgroup's limit and the agent's VmLck. States: a guest
// with a big file cache, its balloon inflated and handed off (the limit lowered
// into the cache), the host killed -9 and restarted with the balloon handed
// off, deflated, and the agent killed -9. Tolerances, where a figure is sampled by the
// agent (once a second) and the kernel's moves meanwhile: Free within 16 MiB of
// limit − usage (the agent's heap, its log writes and a GC between the sample
// and our read), Cache within 8 MiB of total_cache (the workload sleeps; only
// the agent's log grows it). Limits and balloon sizes are exact.
// Needs root and a v1 memory controller; skips with a printed reason otherwise.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostView, VmView } from '@memballoon/host';
import { ctl, ctlJson, spawnHost, stopAll, tempDataDir, type StartedHost } from './support/host.js';
import { freePort } from './support/ports.js';
import { isAlive } from './support/proc.js';
import { openTestHierarchy, removeCgroupTree, testCgroupName, type TestHierarchy } from './support/memory-hierarchy.js';
import { cgroupMib, cgroupOomKills } from './support/cgroup-v1.js';
import { vmLockedMib } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const POOL_MIB = 1024;
const VM_MIB = 512;
const CACHE_MIB = 200;
const BALLOON_MIB = 128;
const FREE_TOLERANCE_MIB = 16;
const CACHE_TOLERANCE_MIB = 8;
const PARENT = testCgroupName();

let cg: TestHierarchy = { skipReason: '', root: '', version: 1 };
let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;
let port = 0;
let files = '';

const poolDir = () => join(cg.root, PARENT);
const vmDir = () => join(poolDir(), 't1');
const statMib = (key: string) => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync(join(vmDir(), 'memory.stat'), 'utf8'))?.[1] ?? 0) / 1024 / 1024;
const vm = () => ctlJson<VmView>(host.url, 'showvminfo', 't1');
const hostInfo = () => ctlJson<HostView>(host.url, 'showhostinfo');

/** The kernel's side: the VM cgroup's limit, usage and cache, in MiB. */
function kernel(): { limitMib: number; usageMib: number; cacheMib: number; freeMib: number } {
  const limitMib = cgroupMib(vmDir(), 'memory.limit_in_bytes');
  const usageMib = cgroupMib(vmDir(), 'memory.usage_in_bytes');
  return { limitMib, usageMib, cacheMib: statMib('total_cache'), freeMib: Math.max(0, limitMib - usageMib) };
}

/** The metrics of t1 as `metrics query t1 --json` prints them, in MiB by name. */
async function metrics(): Promise<Record<string, number>> {
  const rows = await ctlJson<{ object: string; metric: string; valueKib: number }[]>(host.url, 'metrics', 'query', 't1');
  return Object.fromEntries(rows.map((r) => [r.metric, r.valueKib / 1024]));
}

/**
 * Polls until the guest's reported Total, Free and Cache (the metrics and
 * showvminfo's stats) agree with the VM cgroup (Total: its limit, which
 * with what was handed off is the VM's memory), within the tolerances above;
 * the deadline's error shows both sides.
 */
async function guestFiguresAgree(): Promise<void> {
  let last = '';
  await waitFor(
    async () => {
      const m = await metrics();
      const k = kernel();
      const v = await vm();
      last = JSON.stringify({ metrics: m, stats: v.stats, kernel: k });
      // Total is what the guest can hold now: the limit (the VM's memory less what was handed off).
      const total = m['Guest/RAM/Usage/Total'] === k.limitMib && v.stats?.totalMib === k.limitMib && k.limitMib + (v.balloon?.handedOffMib ?? 0) === VM_MIB;
      const free = Math.abs((m['Guest/RAM/Usage/Free'] ?? -1e9) - k.freeMib) <= FREE_TOLERANCE_MIB;
      const cache = Math.abs((m['Guest/RAM/Usage/Cache'] ?? -1e9) - k.cacheMib) <= CACHE_TOLERANCE_MIB;
      return total && free && cache;
    },
    { what: 'the guest figures to agree with its cgroup', timeoutMs: 30_000, intervalMs: 500 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${last}`);
  });
}

/** The host on this file's port (the agents reconnect to it after a restart). */
const startHostOnPort = () =>
  spawnHost({
    dataDir: data.dir,
    poolSizeMib: POOL_MIB,
    extra: ['--listen', `127.0.0.1:${port}`, '--cgroup-parent', PARENT, '--pool-cgroup', '--policy-interval-ms', '0'],
  });

/** The samples of `/metrics` (Prometheus text) by name with labels, read with the read-only token. */
async function prometheus(): Promise<Map<string, number>> {
  const token = readFileSync(join(data.dir, 'readonly.token'), 'utf8').trim();
  const res = await fetch(`${host.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m?.[1] && m[2]) samples.set(m[1], Number(m[2]));
  }
  return samples;
}

/** showvminfo --machinereadable as a map of key to value (quotes removed). */
async function machineReadable(): Promise<Map<string, string>> {
  const r = await ctl(host.url, 'showvminfo', 't1', '--machinereadable');
  expect(r.code, r.stderr).toBe(0);
  return new Map(
    r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).replace(/^"|"$/g, '')]),
  );
}

beforeAll(async () => {
  cg = await openTestHierarchy(PARENT);
  if (!cg.skipReason && cg.version !== 1) cg.skipReason = 'memory is on cgroup v2 here; this file reads v1 files';
  if (cg.skipReason) return console.log(`truth-figures skipped: ${cg.skipReason}`);
  data = tempDataDir();
  // On the disk (not tmpfs): file pages the kernel can drop once written back.
  files = mkdtempSync(join(data.dir, 'files-'));
  port = await freePort();
  host = await startHostOnPort();
  expect((await ctl(host.url, 'createvm', '--name', 't1', '--memory', String(VM_MIB))).code).toBe(0);
  // The workload fills its cgroup with clean file cache, then stays.
  const script = `dd if=/dev/zero of=${files}/cache bs=1M count=${CACHE_MIB} conv=fsync status=none && exec sleep 600`;
  const r = await ctl(host.url, 'startvm', 't1', '--type', 'headless', '--', '/bin/sh', '-c', script);
  expect(r.code, r.stderr).toBe(0);
  await waitFor(() => statMib('total_cache') >= CACHE_MIB * 0.9, { what: 'the workload to fill its cache', timeoutMs: 60_000, intervalMs: 200 });
}, 120_000);

afterAll(async () => {
  if (cg.skipReason) return;
  await cleanUp(
    async () => {
      if (host && (await vm()).state === 'running') await ctl(host.url, 'controlvm', 't1', 'poweroff');
    },
    stopAll,
    () => removeCgroupTree(poolDir()),
    () => rmSync(files, { recursive: true, force: true }),
    () => data.remove(),
  );
}, 60_000);

describe('kernel truth of a managed guest’s figures (real v1 cgroups)', () => {
  it('with a big file cache: Total = the cgroup limit, Free = limit − usage, Cache = total_cache; nothing pinned', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    await guestFiguresAgree();
    const v = await vm();
    expect(v.balloon).toMatchObject({ targetMib: 0, actualMib: 0, lockedMib: 0 });
    expect(vmLockedMib(v.pid!)).toBeLessThan(1);
    const k = kernel();
    expect(k.limitMib).toBe(VM_MIB);
    expect(k.cacheMib).toBeGreaterThan(CACHE_MIB * 0.9);
    const h = await hostInfo();
    expect(h.pool).toEqual({ sizeMib: POOL_MIB, heldMib: VM_MIB, reclaimedMib: 0, freeMib: POOL_MIB - VM_MIB });
    expect(cgroupMib(poolDir(), 'memory.limit_in_bytes')).toBe(POOL_MIB);
    // --machinereadable says what --json says.
    const mr = await machineReadable();
    expect(Number(mr.get('guestTotalMib'))).toBe(VM_MIB);
    expect(Math.abs(Number(mr.get('guestCacheMib')) - k.cacheMib)).toBeLessThanOrEqual(CACHE_TOLERANCE_MIB);
    expect(Math.abs(Number(mr.get('guestFreeMib')) - k.freeMib)).toBeLessThanOrEqual(FREE_TOLERANCE_MIB);
    expect(mr.get('balloonLockedMib')).toBe('0');
  }, 90_000);

  it('balloon handed off into the cache: limit = memory − balloon, VmLck ~0, pool and metrics count it, the guest sees its lowered limit', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    const r = await ctl(host.url, 'controlvm', 't1', 'guestmemoryballoon', String(BALLOON_MIB));
    expect(r.code, r.stderr).toBe(0);
    const v = await waitFor(
      async () => {
        const now = await vm();
        const b = now.balloon;
        return b && b.actualMib === BALLOON_MIB && b.handedOffMib === BALLOON_MIB && b.lockedMib === 0 && now;
      },
      { what: 'the balloon to be handed off', timeoutMs: 60_000, intervalMs: 500 },
    );
    const k = kernel();
    expect(k.limitMib).toBe(VM_MIB - BALLOON_MIB);
    expect(k.usageMib).toBeLessThanOrEqual(k.limitMib);
    // Nothing stays pinned once handed off: the kernel agrees with lockedMib 0.
    expect(vmLockedMib(v.pid!)).toBeLessThan(2);
    expect(cgroupOomKills(vmDir())).toBe(0);
    await guestFiguresAgree();
    const m = await metrics();
    expect(m['Guest/RAM/Usage/Balloon']).toBe(BALLOON_MIB);
    const h = await hostInfo();
    expect(h.pool).toEqual({ sizeMib: POOL_MIB, heldMib: VM_MIB - BALLOON_MIB, reclaimedMib: BALLOON_MIB, freeMib: POOL_MIB - VM_MIB + BALLOON_MIB });
    // What the pool says the guests hold is what their limits allow the kernel to charge them.
    expect(h.pool.heldMib).toBe(cgroupMib(vmDir(), 'memory.limit_in_bytes'));
    const hm = Object.fromEntries(
      (await ctlJson<{ object: string; metric: string; valueKib: number }[]>(host.url, 'metrics', 'query'))
        .filter((row) => row.object !== 't1')
        .map((row) => [row.metric, row.valueKib / 1024]),
    );
    expect(hm).toMatchObject({ 'RAM/VMM/Used': VM_MIB - BALLOON_MIB, 'RAM/VMM/Free': POOL_MIB - VM_MIB + BALLOON_MIB, 'RAM/VMM/Ballooned': BALLOON_MIB });
    // Prometheus (/metrics, with the read-only token a scraper gets) says the same of the kernel.
    const prom = await prometheus();
    const limitBytes = cgroupMib(vmDir(), 'memory.limit_in_bytes') * 1024 * 1024;
    expect(prom.get('memballoon_vm_balloon_handed_off_bytes{vm="t1"}')).toBe(BALLOON_MIB * 1024 * 1024);
    expect(prom.get('memballoon_vm_balloon_locked_bytes{vm="t1"}')).toBe(0);
    expect(prom.get('memballoon_vm_held_bytes{vm="t1"}')).toBe(limitBytes);
    expect(prom.get('memballoon_pool_held_bytes')).toBe(limitBytes);
    expect(prom.get('memballoon_pool_size_bytes')).toBe(cgroupMib(poolDir(), 'memory.limit_in_bytes') * 1024 * 1024);
    expect(prom.get('memballoon_reclaim_physical')).toBe(1);
    // list vms --json is an array of the same objects: the same balloon and held memory.
    const listed = (await ctlJson<VmView[]>(host.url, 'list', 'vms')).find((x) => x.name === 't1');
    expect(listed?.balloon).toMatchObject({ actualMib: BALLOON_MIB, handedOffMib: BALLOON_MIB, lockedMib: 0 });
    expect(listed?.heldMib).toBe(VM_MIB - BALLOON_MIB);
    const mr = await machineReadable();
    expect(mr.get('balloonActualMib')).toBe(String(BALLOON_MIB));
    expect(mr.get('balloonLockedMib')).toBe('0');
    expect(mr.get('heldMib')).toBe(String(VM_MIB - BALLOON_MIB));
  }, 120_000);

  it('the host killed -9 and restarted with the balloon handed off: the figures it rebuilds agree with the limit it left', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    const before = await vm();
    await host.kill();
    // While the host is down the kernel keeps the lowered limit; the agent holds nothing pinned.
    expect(kernel().limitMib).toBe(VM_MIB - BALLOON_MIB);
    host = await startHostOnPort();
    const v = await waitFor(
      async () => {
        const now = await vm();
        return now.state === 'running' && now.stats && now;
      },
      { what: 't1 to reconnect', timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(v.pid).toBe(before.pid);
    expect(v.balloon).toMatchObject({ targetMib: BALLOON_MIB, actualMib: BALLOON_MIB, handedOffMib: BALLOON_MIB, lockedMib: 0 });
    expect(kernel().limitMib).toBe(VM_MIB - BALLOON_MIB);
    expect(vmLockedMib(v.pid!)).toBeLessThan(2);
    expect(cgroupMib(poolDir(), 'memory.limit_in_bytes')).toBe(POOL_MIB);
    const h = await hostInfo();
    expect(h.pool).toEqual({ sizeMib: POOL_MIB, heldMib: VM_MIB - BALLOON_MIB, reclaimedMib: BALLOON_MIB, freeMib: POOL_MIB - VM_MIB + BALLOON_MIB });
    await guestFiguresAgree();
  }, 120_000);

  it('deflated: the limit is the VM’s memory again, and Total, Free and the pool follow', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    const r = await ctl(host.url, 'controlvm', 't1', 'guestmemoryballoon', '0', '--wait');
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => (await vm()).balloon?.actualMib === 0, { what: 'the balloon to deflate', timeoutMs: 60_000, intervalMs: 500 });
    expect(kernel().limitMib).toBe(VM_MIB);
    await guestFiguresAgree();
    const v = await vm();
    expect(v.balloon).toMatchObject({ targetMib: 0, actualMib: 0, lockedMib: 0, handedOffMib: 0 });
    expect(vmLockedMib(v.pid!)).toBeLessThan(1);
    expect((await hostInfo()).pool).toEqual({ sizeMib: POOL_MIB, heldMib: VM_MIB, reclaimedMib: 0, freeMib: POOL_MIB - VM_MIB });
  }, 120_000);

  it('the agent killed -9: the VM powers off, its cgroup goes, and the pool holds nothing for it', async (ctx) => {
    if (cg.skipReason) return ctx.skip();
    const r = await ctl(host.url, 'controlvm', 't1', 'guestmemoryballoon', '64', '--wait');
    expect(r.code, r.stderr).toBe(0);
    const pid = (await vm()).pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => (await vm()).state === 'poweroff' && !existsSync(vmDir()), {
      what: 't1 to power off and its cgroup to go',
      timeoutMs: 60_000,
      intervalMs: 500,
    });
    expect(isAlive(pid)).toBe(false);
    const v = await vm();
    expect(v.balloon).toBeUndefined();
    expect((await hostInfo()).pool).toEqual({ sizeMib: POOL_MIB, heldMib: 0, reclaimedMib: 0, freeMib: POOL_MIB });
    const rows = await ctlJson<{ object: string; metric: string; valueKib: number }[]>(host.url, 'metrics', 'query');
    expect(rows.filter((row) => row.object === 't1')).toEqual([]);
    expect(Object.fromEntries(rows.map((row) => [row.metric, row.valueKib / 1024]))).toMatchObject({
      'RAM/VMM/Used': 0,
      'RAM/VMM/Ballooned': 0,
      'RAM/VMM/Free': POOL_MIB,
    });
    // The pool cgroup holds nothing of the guest the kernel could not drop: v1 moves the dead
    // cgroup's file cache up to its parent (clean cache, reclaimed under the pool's limit), so
    // it is usage less that cache, not usage, that must be ~0.
    const poolStat = readFileSync(join(poolDir(), 'memory.stat'), 'utf8');
    const poolCacheMib = Number(/^total_cache (\d+)$/m.exec(poolStat)?.[1] ?? 0) / 1024 / 1024;
    expect(cgroupMib(poolDir(), 'memory.usage_in_bytes') - poolCacheMib).toBeLessThan(16);
  }, 120_000);
});
