import { describe, expect, it } from 'vitest';
import { parseCgroupLimit, parseKeyValues, parseMeminfo, parsePressure, parseProcCgroup, parseProcStat, parseProcStatus } from './parsers.js';

describe('/proc parsers', () => {
  it('reads /proc/meminfo in bytes', () => {
    const m = parseMeminfo('MemTotal:       24684092 kB\nMemFree:        23660172 kB\nMemAvailable:   24320884 kB\nHugePages_Total:       0\n');
    expect(m.get('MemTotal')).toBe(24684092 * 1024);
    expect(m.get('MemAvailable')).toBe(24320884 * 1024);
    expect(m.get('HugePages_Total')).toBe(0);
  });

  it('reads key-value files (vmstat, memory.stat)', () => {
    const v = parseKeyValues('pgfault 48086\npgmajfault 3\nbad line here\n');
    expect(v.get('pgfault')).toBe(48086);
    expect(v.get('pgmajfault')).toBe(3);
    expect(v.size).toBe(2);
  });

  it('reads PSI lines, and none where the file lacks them', () => {
    const p = parsePressure('some avg10=1.50 avg60=0.20 avg300=0.00 total=123\nfull avg10=0.75 avg60=0.00 avg300=0.00 total=4\n');
    expect(p.some?.avg10Percent).toBe(1.5);
    expect(p.full?.avg10Percent).toBe(0.75);
    expect(parsePressure('')).toEqual({ some: null, full: null });
  });

  it('reads VmRSS and VmLck from /proc/PID/status', () => {
    expect(parseProcStatus('Name:\tnode\nVmLck:\t   65536 kB\nVmRSS:\t  167816 kB\n')).toEqual({ rssBytes: 167816 * 1024, lockedBytes: 65536 * 1024 });
    expect(parseProcStatus('Name:\tkthreadd\n')).toEqual({ rssBytes: 0, lockedBytes: 0 });
  });

  it('reads /proc/PID/stat even when the command holds spaces and parentheses', () => {
    const fields = ['S', '42', ...Array.from({ length: 5 }, () => '0'), '1000', '0', '30', '0', ...Array.from({ length: 10 }, () => '0'), '2048', '0'];
    const st = parseProcStat(`1234 (my (odd) cmd) ${fields.join(' ')}`);
    expect(st).toMatchObject({ pid: 1234, ppid: 42, state: 'S', minorFaults: 1000, majorFaults: 30, rssPages: 2048 });
    expect(parseProcStat('garbage')).toBeNull();
  });

  it('reads /proc/PID/cgroup (v1 and v2 lines)', () => {
    const e = parseProcCgroup('4:memory:/process_api/ed11\n1:cpu,cpuacct:/\n0::/user.slice\n');
    expect(e).toEqual([
      { hierarchyId: 4, controllers: ['memory'], path: '/process_api/ed11' },
      { hierarchyId: 1, controllers: ['cpu', 'cpuacct'], path: '/' },
      { hierarchyId: 0, controllers: [], path: '/user.slice' },
    ]);
  });

  it('reads cgroup limits: v2 max and v1 huge numbers are unlimited', () => {
    expect(parseCgroupLimit('max\n')).toBeNull();
    expect(parseCgroupLimit('9223372036854771712\n')).toBeNull();
    expect(parseCgroupLimit('536870912\n')).toBe(536870912);
  });
});
