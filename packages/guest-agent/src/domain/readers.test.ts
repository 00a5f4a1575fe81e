import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CgroupDomain, chooseDomain, findMemoryCgroup, MachineDomain, readMachineMemory, openDomain, ProcessDomain, readProcessTree } from './readers.js';

describe('domain choice', () => {
  const base = { requested: 'auto' as const, wrapped: false, cgroupLimited: false, cgroupFound: true };
  it('picks process with a VM size, a limited cgroup next, the machine only when asked', () => {
    expect(chooseDomain({ ...base, memoryMib: 512 })).toBe('process');
    expect(chooseDomain({ ...base, cgroupLimited: true })).toBe('cgroup');
    expect(chooseDomain({ ...base, requested: 'machine' })).toBe('machine');
    // Neither a size nor a limit: no guessing the whole machine (issue 17.7).
    expect(() => chooseDomain(base)).toThrowError(
      expect.objectContaining({ code: 'invalid_config', message: expect.stringMatching(/--memory-mib N.*--domain machine/) }),
    );
    expect(chooseDomain({ ...base, requested: 'machine', memoryMib: 512 })).toBe('machine');
  });
  it('refuses the process domain without a VM size, and a cgroup that is not there', () => {
    expect(() => chooseDomain({ ...base, wrapped: true })).toThrowError(expect.objectContaining({ code: 'invalid_config' }));
    expect(() => chooseDomain({ ...base, requested: 'cgroup', cgroupFound: false })).toThrowError(expect.objectContaining({ code: 'domain_unavailable' }));
  });
});

describe('domains on this machine', () => {
  it('machine: totals and availability from /proc/meminfo', () => {
    const d = new MachineDomain();
    expect(d.totalMib).toBeGreaterThan(0);
    const s = d.stats();
    expect(s.availableBytes).toBeGreaterThan(0);
    expect(s.availableBytes).toBeLessThanOrEqual(s.totalBytes);
    expect(s.minorFaults).toBeGreaterThan(0);
  });

  it('process: a wrapped child counts in the tree, against the VM size', async () => {
    const child = spawn(process.execPath, ['-e', 'const b = Buffer.alloc(32 * 1024 * 1024, 1); setInterval(() => b[0]++, 1000)'], { stdio: 'ignore' });
    try {
      const deadline = Date.now() + 10_000;
      let kid: ReturnType<typeof readProcessTree>[number] | undefined;
      while (Date.now() < deadline) {
        kid = readProcessTree([process.pid]).find((p) => p.pid === child.pid);
        if (kid && kid.rssBytes > 32 * 1024 * 1024) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(kid?.rssBytes).toBeGreaterThan(32 * 1024 * 1024);
      const d = new ProcessDomain(4096);
      const s = d.stats();
      expect(s.totalBytes).toBe(4096 * 1024 * 1024);
      expect(s.freeBytes).toBeLessThan(4096 * 1024 * 1024 - 32 * 1024 * 1024);
    } finally {
      child.kill();
      await once(child, 'exit');
    }
  });

  it('openDomain follows --domain, and auto picks process when the VM size is given', () => {
    expect(openDomain({ memoryMib: 2048 }).kind).toBe('process');
    expect(openDomain({ domain: 'machine' }).kind).toBe('machine');
  });
});

describe('cgroup domain (files written by the test)', () => {
  const MIB = 1024 * 1024;
  const withDir = (files: Record<string, string>, fn: (dir: string) => void): void => {
    const dir = mkdtempSync(join(tmpdir(), 'cg-'));
    try {
      for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
      fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('v2: memory.max is the total; available counts inactive file cache; PSI from memory.pressure', () => {
    withDir(
      {
        'memory.current': `${300 * MIB}\n`,
        'memory.max': `${512 * MIB}\n`,
        'memory.stat': `anon ${200 * MIB}\nfile ${100 * MIB}\ninactive_file ${40 * MIB}\npgfault 900\npgmajfault 9\n`,
        'memory.pressure': 'some avg10=2.50 avg60=0.00 avg300=0.00 total=1\nfull avg10=1.25 avg60=0.00 avg300=0.00 total=1\n',
      },
      (dir) => {
        const d = new CgroupDomain({ version: 2, dir });
        expect(d.totalMib).toBe(512);
        const s = d.stats();
        expect(s).toMatchObject({
          domain: 'cgroup',
          totalBytes: 512 * MIB,
          freeBytes: 212 * MIB,
          diskCachesBytes: 100 * MIB,
          majorFaults: 9,
          minorFaults: 891,
          psiSomeAvg10Percent: 2.5,
          psiFullAvg10Percent: 1.25,
        });
        // 512 - 300 + 40 inactive file = 252 MiB (the machine has more than that free).
        if (readMachineMemory().availableBytes > 1024 * MIB) {
          expect(s.availableBytes).toBe(252 * MIB);
          expect(d.availability()).toEqual({ totalBytes: 512 * MIB, availableBytes: 252 * MIB });
        }
      },
    );
  });

  it('v1: limit_in_bytes and usage_in_bytes; an unlimited cgroup is as large as the machine', () => {
    withDir(
      {
        'memory.usage_in_bytes': `${100 * MIB}\n`,
        'memory.limit_in_bytes': '9223372036854771712\n',
        'memory.stat': `total_cache ${10 * MIB}\ntotal_inactive_file ${5 * MIB}\ntotal_pgfault 50\ntotal_pgmajfault 5\n`,
      },
      (dir) => {
        const d = new CgroupDomain({ version: 1, dir });
        expect(d.totalMib).toBe(new MachineDomain().totalMib);
        expect(d.stats()).toMatchObject({ diskCachesBytes: 10 * MIB, majorFaults: 5, minorFaults: 45 });
      },
    );
  });

  it('process domain charged to a limited cgroup: reports the kernel figures of the cgroup, decides on the tree', () => {
    withDir(
      {
        'memory.usage_in_bytes': `${300 * MIB}\n`,
        'memory.limit_in_bytes': `${448 * MIB}\n`,
        'memory.stat': `total_cache ${200 * MIB}\ntotal_inactive_file ${150 * MIB}\n`,
      },
      (dir) => {
        const charged = new ProcessDomain(512, [process.pid], 4096, { version: 1, dir });
        const alone = new ProcessDomain(512, [process.pid], 4096);
        const s = charged.stats();
        // Total = the limit (the VM's 512 less 64 handed off), free = limit − usage, caches = total_cache.
        expect(s).toMatchObject({ domain: 'process', totalBytes: 448 * MIB, freeBytes: 148 * MIB, diskCachesBytes: 200 * MIB });
        expect(s.availableBytes).toBeLessThanOrEqual(298 * MIB);
        // The balloon's decisions stay on the tree, against the VM's memory.
        expect(charged.availability().totalBytes).toBe(512 * MIB);
        expect(alone.stats()).toMatchObject({ totalBytes: 512 * MIB, diskCachesBytes: 0 });
      },
    );
  });

  it("finds this process's memory cgroup where there is one", () => {
    const loc = findMemoryCgroup();
    if (loc) expect([1, 2]).toContain(loc.version);
  });
});
