import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KsmController } from './ksm-controller.js';
import { decideKsm, MOM_KSM_POLICY, unmergedMib, type KsmInputs } from './ksm-policy.js';
import { KsmSysfs, probeKsm } from './ksm-sysfs.js';

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

describe('KSM controller', () => {
  it('drives KSM while page-fusion VMs run and puts it back when none remain', () => {
    const dir = fakeSysfs({ run: 0, pages_to_scan: 100, sleep_millisecs: 20 });
    const c = new KsmController({ sysfs: new KsmSysfs({ dir, lockPath: join(dir, 'lock') }), memTotalMib: 16 * 1024 });
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

  it('reports, without throwing, where KSM cannot be driven', () => {
    const c = new KsmController({ sysfs: new KsmSysfs({ dir: '/nonexistent/ksm' }) });
    const r = c.tick({ fusionVmsRunning: 1, sharableMib: 10, unmergedMib: 10 });
    expect(r).toMatchObject({ available: false, running: false, driving: false, sharedMib: 0 });
    expect(r.detail).toMatch(/no KSM/);
  });

  it('restores on close', () => {
    const dir = fakeSysfs({ run: 1, pages_to_scan: 250, sleep_millisecs: 50 });
    const c = new KsmController({ sysfs: new KsmSysfs({ dir, lockPath: join(dir, 'lock') }), memTotalMib: 8192 });
    c.tick({ fusionVmsRunning: 1, sharableMib: 10, unmergedMib: 10 });
    expect(readNum(dir, 'sleep_millisecs')).toBe(20);
    c.close();
    expect([readNum(dir, 'run'), readNum(dir, 'pages_to_scan'), readNum(dir, 'sleep_millisecs')]).toEqual([1, 250, 50]);
  });
});
