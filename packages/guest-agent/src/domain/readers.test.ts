import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { chooseDomain, MachineDomain, openDomain, ProcessDomain, readProcessTree } from './readers.js';

describe('domain choice', () => {
  const base = { requested: 'auto' as const, wrapped: false, cgroupLimited: false, cgroupFound: true };
  it('picks process with a VM size, a limited cgroup next, the machine otherwise', () => {
    expect(chooseDomain({ ...base, memoryMib: 512 })).toBe('process');
    expect(chooseDomain({ ...base, cgroupLimited: true })).toBe('cgroup');
    expect(chooseDomain(base)).toBe('machine');
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
      let kid;
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
