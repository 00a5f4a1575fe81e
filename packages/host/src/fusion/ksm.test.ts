import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KsmController } from './ksm-controller.js';
import { decideKsm, DEFAULT_KSM_POLICY, HINT_BURST_POLICY, MOM_KSM_POLICY, unmergedMib, type KsmInputs } from './ksm-policy.js';
import { KsmSysfs, probeKsm } from './ksm-sysfs.js';
import { processCpuMs, type KsmdThread } from './ksmd-thread.js';

// A ksmd whose nice the tests can watch.
function fakeKsmd(nice = 5): KsmdThread & { value: number } {
  const k = { value: nice, nice: () => k.value, setNice: (n: number) => void (k.value = n), cpuMs: () => 1230 };
  return k;
}

const base: KsmInputs = { fusionVmsRunning: 3, sharableMib: 96, unmergedMib: 96, pagesShared: 0, pagesSharing: 0, pagesToScan: 100, memTotalMib: 16 * 1024 };

describe('KSM decision (MOM constants)', () => {
  it('leaves KSM alone while no page-fusion VM runs', () => {
    expect(decideKsm({ ...base, fusionVmsRunning: 0 })).toEqual({ drive: false, reason: 'no VM with page fusion runs' });
  });

  it('raises the scan rate by 300 pages up to 1250 while hints are not merged', () => {
    let pages = 100;
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      const d = decideKsm({ ...base, pagesToScan: pages });
      if (!d.drive) throw new Error('should drive');
      expect(d.settings.run).toBe(true);
      pages = d.settings.pagesToScan;
      seen.push(pages);
    }
    expect(seen).toEqual([400, 700, 1000, 1250, 1250, 1250]);
  });

  it('sleeps 10 ms on a 16 GiB host, longer on smaller hosts, shorter on larger', () => {
    const sleep = (memTotalMib: number): number => {
      const d = decideKsm({ ...base, memTotalMib });
      return d.drive ? d.settings.sleepMillisecs : -1;
    };
    expect(sleep(16 * 1024)).toBe(10);
    expect(sleep(8 * 1024)).toBe(20);
    expect(sleep(24 * 1024)).toBe(7);
    expect(sleep(1024 * 1024)).toBe(1);
  });

  it('decays to at least 64 pages once all is merged, and turns off when nothing is sharable', () => {
    const d = decideKsm({ ...base, unmergedMib: 0, pagesShared: 8192, pagesSharing: 16384, pagesToScan: 100 });
    expect(d).toMatchObject({ drive: true, settings: { run: true, pagesToScan: 64 } });
    const d2 = decideKsm({ ...base, unmergedMib: 0, pagesToScan: 1250, pagesShared: 1 });
    expect(d2).toMatchObject({ settings: { pagesToScan: 1200 } });
    expect(decideKsm({ ...base, sharableMib: 0, unmergedMib: 0 })).toMatchObject({ drive: true, settings: { run: false } });
  });

  it('bursts while hints show unmerged candidates and the controller allows it: no sleep, nice 0, a batch of about the candidates', () => {
    const d = decideKsm({ ...base, burstAllowed: true });
    expect(d).toMatchObject({ drive: true, burst: true, settings: { run: true, sleepMillisecs: 0, ksmdNice: 0, pagesToScan: 96 * 256 } });
    // Small and huge candidate sets stay within the batch bounds.
    expect(decideKsm({ ...base, unmergedMib: 1, burstAllowed: true })).toMatchObject({ settings: { pagesToScan: HINT_BURST_POLICY.burstPagesMin } });
    expect(decideKsm({ ...base, unmergedMib: 10_000, burstAllowed: true })).toMatchObject({ settings: { pagesToScan: HINT_BURST_POLICY.burstPagesMax } });
    // Nothing unmerged: no burst, whatever is allowed; out of a burst MOM's bounds hold again.
    expect(decideKsm({ ...base, unmergedMib: 0, pagesShared: 1, burstAllowed: true })).toMatchObject({ settings: { sleepMillisecs: 10 } });
    const after = decideKsm({ ...base, pagesToScan: 24_576 });
    expect(after).toMatchObject({ settings: { pagesToScan: MOM_KSM_POLICY.npagesMax, sleepMillisecs: 10 } });
    expect(after.drive && after.settings.ksmdNice).toBeUndefined();
  });

  it('counts unmerged memory per VM, never below zero', () => {
    expect(unmergedMib(32, 10)).toBe(22);
    expect(unmergedMib(32, 40)).toBe(0);
    expect(MOM_KSM_POLICY.npagesMax).toBe(1250);
  });
});

// A directory that looks like /sys/kernel/mm/ksm.
let dirs: string[] = [];
function fakeSysfs(values: Record<string, number> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'fake-ksm-'));
  dirs.push(dir);
  const v = { run: 0, pages_to_scan: 100, sleep_millisecs: 20, pages_shared: 0, pages_sharing: 0, pages_unshared: 0, full_scans: 0, ...values };
  for (const [k, n] of Object.entries(v)) writeFileSync(join(dir, k), `${n}\n`);
  return dir;
}
const readNum = (dir: string, name: string): number => Number(readFileSync(join(dir, name), 'utf8'));
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

describe('KSM sysfs edge', () => {
  it('says clearly why KSM cannot be driven', () => {
    expect(probeKsm('/nonexistent/ksm')).toEqual({ ok: false, detail: expect.stringMatching(/no KSM .*hints still work/) });
    expect(probeKsm(fakeSysfs(), 'darwin')).toEqual({ ok: false, detail: expect.stringMatching(/Linux-only .*darwin/) });
    expect(probeKsm(fakeSysfs())).toEqual({ ok: true });
  });

  it('saves the settings, writes what differs, restores them and frees the lock', () => {
    const dir = fakeSysfs();
    const lockPath = join(dir, 'lock');
    const k = new KsmSysfs({ dir, lockPath });
    k.apply({ run: true, pagesToScan: 400, sleepMillisecs: 7 });
    expect([readNum(dir, 'run'), readNum(dir, 'pages_to_scan'), readNum(dir, 'sleep_millisecs')]).toEqual([1, 400, 7]);
    expect(k.saved).toEqual({ run: false, pagesToScan: 100, sleepMillisecs: 20 });
    // A second driver (another host, another test) is kept off.
    const other = new KsmSysfs({ dir, lockPath });
    expect(() => other.apply({ run: false, pagesToScan: 1, sleepMillisecs: 1 })).toThrow(expect.objectContaining({ code: 'ksm_unavailable' }));
    expect(readNum(dir, 'pages_to_scan')).toBe(400);
    k.restore();
    expect([readNum(dir, 'run'), readNum(dir, 'pages_to_scan'), readNum(dir, 'sleep_millisecs')]).toEqual([0, 100, 20]);
    expect(existsSync(lockPath)).toBe(false);
    expect(k.driving).toBe(false);
  });

  it("raises ksmd's nice only while settings ask for it, and restores the nice it found", () => {
    const dir = fakeSysfs();
    const ksmd = fakeKsmd(5);
    const k = new KsmSysfs({ dir, lockPath: join(dir, 'lock'), ksmd });
    expect(k.read().ksmdNice).toBe(5);
    k.apply({ run: true, pagesToScan: 24_576, sleepMillisecs: 0, ksmdNice: 0 });
    expect([ksmd.value, readNum(dir, 'sleep_millisecs')]).toEqual([0, 0]);
    expect(k.saved).toEqual({ run: false, pagesToScan: 100, sleepMillisecs: 20, ksmdNice: 5 });
    // Settings without a nice mean "as found".
    k.apply({ run: true, pagesToScan: 1250, sleepMillisecs: 10 });
    expect(ksmd.value).toBe(5);
    k.apply({ run: true, pagesToScan: 24_576, sleepMillisecs: 0, ksmdNice: 0 });
    k.restore();
    expect([ksmd.value, readNum(dir, 'run'), readNum(dir, 'pages_to_scan'), readNum(dir, 'sleep_millisecs')]).toEqual([5, 0, 100, 20]);
  });

  it('a driver that died while bursting leaves its found nice in the lock, and the next driver restores it', () => {
    const dir = fakeSysfs({ run: 1, pages_to_scan: 24_576, sleep_millisecs: 0 });
    const lockPath = join(dir, 'lock');
    writeFileSync(lockPath, `999999999 dead\n${JSON.stringify({ run: false, pagesToScan: 100, sleepMillisecs: 20, ksmdNice: 5 })}\n`);
    const ksmd = fakeKsmd(0);
    const k = new KsmSysfs({ dir, lockPath, isAlive: () => false, ksmd });
    k.apply({ run: true, pagesToScan: 64, sleepMillisecs: 10 });
    expect(ksmd.value).toBe(5);
    k.restore();
    expect([ksmd.value, readNum(dir, 'run'), readNum(dir, 'sleep_millisecs')]).toEqual([5, 0, 20]);
  });

  it("reads a process's CPU time from /proc/PID/stat, whatever its name holds", () => {
    // 14th and 15th fields: utime 150, stime 50 ticks of 10 ms.
    expect(processCpuMs('37 (ksm d) S 2 0 0 0 -1 2129984 0 0 0 0 150 50 0 0 25 5 1 0 31 0 0')).toBe(2000);
  });

  it('takes over the lock of a driver that died, and restores what that driver had found', () => {
    // The dead driver left KSM running fast; it had found it off at 100/20.
    const dir = fakeSysfs({ run: 1, pages_to_scan: 1250, sleep_millisecs: 7 });
    const lockPath = join(dir, 'lock');
    writeFileSync(lockPath, `999999999 dead\n${JSON.stringify({ run: false, pagesToScan: 100, sleepMillisecs: 20 })}\n`);
    const k = new KsmSysfs({ dir, lockPath, isAlive: () => false });
    k.apply({ run: true, pagesToScan: 64, sleepMillisecs: 10 });
    expect(k.driving).toBe(true);
    expect(k.saved).toEqual({ run: false, pagesToScan: 100, sleepMillisecs: 20 });
    k.restore();
    expect([readNum(dir, 'run'), readNum(dir, 'pages_to_scan'), readNum(dir, 'sleep_millisecs')]).toEqual([0, 100, 20]);
    expect(existsSync(lockPath)).toBe(false);
  });
});

// MOM's ramp, as the controller drives it once a burst's budget is spent (none here).
const NO_BURST = { ...DEFAULT_KSM_POLICY, burstMaxFullScans: 0 };

describe('KSM controller', () => {
  it('drives KSM while page-fusion VMs run and puts it back when none remain', () => {
    const dir = fakeSysfs({ run: 0, pages_to_scan: 100, sleep_millisecs: 20 });
    const c = new KsmController({ sysfs: new KsmSysfs({ dir, lockPath: join(dir, 'lock') }), memTotalMib: 16 * 1024, policy: NO_BURST });
    expect(c.report()).toMatchObject({ available: true, running: false, driving: false });
    let r = c.tick({ fusionVmsRunning: 2, sharableMib: 64, unmergedMib: 64 });
    expect(r).toMatchObject({ available: true, running: true, driving: true, settings: { run: true, pagesToScan: 400, sleepMillisecs: 10 } });
    r = c.tick({ fusionVmsRunning: 2, sharableMib: 64, unmergedMib: 64 });
    expect(readNum(dir, 'pages_to_scan')).toBe(700);
    // The kernel merges: pages_sharing grows; hints are all merged now.
    writeFileSync(join(dir, 'pages_shared'), '8192\n');
    writeFileSync(join(dir, 'pages_sharing'), '16384\n');
    r = c.tick({ fusionVmsRunning: 2, sharableMib: 64, unmergedMib: 0 });
    expect(r.sharedMib).toBe(64);
    expect(readNum(dir, 'pages_to_scan')).toBe(650);
    r = c.tick({ fusionVmsRunning: 0, sharableMib: 0, unmergedMib: 0 });
    expect(r).toMatchObject({ running: false, driving: false, settings: null });
    expect([readNum(dir, 'run'), readNum(dir, 'pages_to_scan'), readNum(dir, 'sleep_millisecs')]).toEqual([0, 100, 20]);
  });

  it('bursts when hints bring unmerged candidates, for a bounded number of full scans, and again when more arrive', () => {
    const dir = fakeSysfs({ run: 0, pages_to_scan: 100, sleep_millisecs: 20, full_scans: 40 });
    const ksmd = fakeKsmd(5);
    let nowMs = 0;
    const c = new KsmController({ sysfs: new KsmSysfs({ dir, lockPath: join(dir, 'lock'), ksmd }), memTotalMib: 16 * 1024, nowMs: () => nowMs });
    let r = c.tick({ fusionVmsRunning: 3, sharableMib: 96, unmergedMib: 96 });
    expect(r).toMatchObject({ burst: true, ksmdCpuMs: 1230, settings: { sleepMillisecs: 0, pagesToScan: 96 * 256 } });
    expect([readNum(dir, 'sleep_millisecs'), ksmd.value]).toEqual([0, 0]);
    // Two full scans later it still bursts; after the third (the stats lag) it falls back to MOM's rate and nice.
    writeFileSync(join(dir, 'full_scans'), '42\n');
    expect(c.tick({ fusionVmsRunning: 3, sharableMib: 96, unmergedMib: 96 }).burst).toBe(true);
    writeFileSync(join(dir, 'full_scans'), '43\n');
    r = c.tick({ fusionVmsRunning: 3, sharableMib: 96, unmergedMib: 96 });
    expect(r).toMatchObject({ burst: false, settings: { sleepMillisecs: 10, pagesToScan: 1250 } });
    expect(ksmd.value).toBe(5);
    // More sharable memory (a new guest) starts a new burst; so does a time budget's end stop it.
    expect(c.tick({ fusionVmsRunning: 4, sharableMib: 128, unmergedMib: 32 }).burst).toBe(true);
    nowMs += HINT_BURST_POLICY.burstMaxMs;
    expect(c.tick({ fusionVmsRunning: 4, sharableMib: 128, unmergedMib: 32 }).burst).toBe(false);
    // All merged: the next unmerged candidates burst again.
    expect(c.tick({ fusionVmsRunning: 4, sharableMib: 128, unmergedMib: 0 }).burst).toBe(false);
    expect(c.tick({ fusionVmsRunning: 4, sharableMib: 128, unmergedMib: 8 }).burst).toBe(true);
    c.close();
    expect([ksmd.value, readNum(dir, 'run'), readNum(dir, 'sleep_millisecs')]).toEqual([5, 0, 20]);
  });

  it('kick() ticks at once between timer ticks, coalesced, and only once started', async () => {
    const dir = fakeSysfs();
    const c = new KsmController({ sysfs: new KsmSysfs({ dir, lockPath: join(dir, 'lock'), ksmd: null }), memTotalMib: 16 * 1024 });
    let asked = 0;
    c.kick();
    await new Promise((r) => setImmediate(r));
    expect(asked).toBe(0);
    c.start(3_600_000, () => {
      asked++;
      return { fusionVmsRunning: 1, sharableMib: 8, unmergedMib: 8 };
    });
    expect(asked).toBe(1);
    c.kick();
    c.kick();
    await new Promise((r) => setImmediate(r));
    expect(asked).toBe(2);
    expect(readNum(dir, 'sleep_millisecs')).toBe(0);
    c.close();
    expect(readNum(dir, 'sleep_millisecs')).toBe(20);
  });

  it('reads the kernel only every 10 s while idle (no page-fusion VM, not driving)', () => {
    const dir = fakeSysfs({ run: 0 });
    let nowMs = 0;
    const c = new KsmController({ sysfs: new KsmSysfs({ dir, lockPath: join(dir, 'lock'), ksmd: null }), memTotalMib: 16 * 1024, nowMs: () => nowMs });
    const idle = { fusionVmsRunning: 0, sharableMib: 0, unmergedMib: 0 };
    expect(c.tick(idle).running).toBe(false);
    writeFileSync(join(dir, 'run'), '1\n');
    nowMs += 9_999;
    expect(c.tick(idle).running).toBe(false);
    nowMs += 1;
    expect(c.tick(idle).running).toBe(true);
    // A page-fusion VM is never kept waiting.
    expect(c.tick({ fusionVmsRunning: 1, sharableMib: 8, unmergedMib: 8 })).toMatchObject({ driving: true, burst: true });
    c.close();
  });

  it('reports KSM as available, and who drives it, where another host holds the driver lock', () => {
    const dir = fakeSysfs({ run: 0, pages_to_scan: 100, sleep_millisecs: 20 });
    const lockPath = join(dir, 'lock');
    // Another host (this process stands for it: it is alive) drives KSM.
    const other = new KsmSysfs({ dir, lockPath });
    other.apply({ run: true, pagesToScan: 400, sleepMillisecs: 7 });
    const c = new KsmController({ sysfs: new KsmSysfs({ dir, lockPath }), memTotalMib: 16 * 1024, policy: NO_BURST });
    const r = c.tick({ fusionVmsRunning: 1, sharableMib: 64, unmergedMib: 64 });
    expect(r).toMatchObject({ available: true, running: true, driving: false });
    expect(r.detail).toMatch(/driven by another memballoon host/);
    // Its settings stay the other driver's.
    expect(readNum(dir, 'pages_to_scan')).toBe(400);
    c.close();
    other.restore();
  });

  it('reports, without throwing, where KSM cannot be driven', () => {
    const c = new KsmController({ sysfs: new KsmSysfs({ dir: '/nonexistent/ksm' }) });
    const r = c.tick({ fusionVmsRunning: 1, sharableMib: 10, unmergedMib: 10 });
    expect(r).toMatchObject({ available: false, running: false, driving: false, sharedMib: 0 });
    expect(r.detail).toMatch(/no KSM/);
  });

  it('restores on close', () => {
    const dir = fakeSysfs({ run: 1, pages_to_scan: 250, sleep_millisecs: 50 });
    const c = new KsmController({ sysfs: new KsmSysfs({ dir, lockPath: join(dir, 'lock') }), memTotalMib: 8192, policy: NO_BURST });
    c.tick({ fusionVmsRunning: 1, sharableMib: 10, unmergedMib: 10 });
    expect(readNum(dir, 'sleep_millisecs')).toBe(20);
    c.close();
    expect([readNum(dir, 'run'), readNum(dir, 'pages_to_scan'), readNum(dir, 'sleep_millisecs')]).toEqual([1, 250, 50]);
  });
});
