import { describe, expect, it } from 'vitest';
import { CgroupError } from './errors.js';
import { memoryCgroupOfProc, parseCgroupMounts, parseCount, parseKeyed, parseLimit, parsePids } from './parse.js';

// This machine's mountinfo (cgroup lines), v1 memory plus a hugetlb-only cgroup2.
const MOUNTINFO = `10:31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
11:32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
14:35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
19:40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
20:41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
21:42 23 0:39 / /mnt/with\\040space rw - cgroup cgroup rw,pids
`;

describe('cgroup parsers', () => {
  it('reads limits: bytes, v2 max and the v1 page-counter maximum as no limit', () => {
    expect(parseLimit('268435456\n', 'f')).toBe(268435456);
    expect(parseLimit('max\n', 'f')).toBeNull();
    expect(parseLimit('9223372036854771712\n', 'f')).toBeNull();
    expect(() => parseLimit('-1', 'f')).toThrow(CgroupError);
    expect(() => parseLimit('', 'f')).toThrow(/not a byte count/);
  });

  it('reads counts, keyed files and pids', () => {
    expect(parseCount(' 42\n', 'f')).toBe(42);
    expect(() => parseCount('x', 'f')).toThrow(CgroupError);
    expect(parseKeyed('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n').get('oom_kill')).toBe(3);
    expect(parseKeyed('low 0\nmax 7\n').get('max')).toBe(7);
    expect(parsePids('12\n345\n\n')).toEqual([12, 345]);
    expect(parsePids('')).toEqual([]);
  });

  it('finds cgroup mounts, their version and v1 controllers (name= options are not controllers)', () => {
    const mounts = parseCgroupMounts(MOUNTINFO);
    expect(mounts.find((m) => m.mountPoint === '/sys/fs/cgroup/memory')).toEqual({ mountPoint: '/sys/fs/cgroup/memory', version: 1, controllers: ['memory'] });
    expect(mounts.find((m) => m.mountPoint === '/sys/fs/cgroup/systemd')!.controllers).toEqual([]);
    expect(mounts.find((m) => m.version === 2)!.mountPoint).toBe('/sys/fs/cgroup/unified');
    expect(mounts.some((m) => m.mountPoint === '/mnt/with space')).toBe(true);
    expect(mounts.some((m) => m.mountPoint === '/sys/fs/cgroup')).toBe(false);
  });

  it("reads a process's memory cgroup from /proc/PID/cgroup", () => {
    const text = '9:name=systemd:/\n4:memory:/memballoon/web\n0::/\n';
    expect(memoryCgroupOfProc(text, 1)).toBe('/memballoon/web');
    expect(memoryCgroupOfProc('0::/memballoon/web\n', 2)).toBe('/memballoon/web');
    expect(memoryCgroupOfProc('1:cpu:/\n', 1)).toBeUndefined();
  });
});
