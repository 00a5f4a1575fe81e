import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync, mkdirSync } from 'node:fs';
import { detectMemoryCgroups } from './detect.js';
import { fakeCgroupFs } from './test-fixtures.js';

const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function machine(v2Controllers: string | null, v1Memory: boolean) {
  const fake = fakeCgroupFs(1);
  cleanups.push(fake.cleanup);
  const lines = [];
  if (v1Memory) lines.push(`14:35 31 0:32 / ${fake.root}/memory rw - cgroup cgroup rw,memory`);
  if (v2Controllers !== null) {
    mkdirSync(`${fake.root}/unified`);
    writeFileSync(`${fake.root}/unified/cgroup.controllers`, v2Controllers);
    lines.push(`20:41 31 0:38 / ${fake.root}/unified rw - cgroup2 cgroup2 rw`);
  }
  return { fake, mountinfo: lines.join('\n') };
}

describe('detectMemoryCgroups', () => {
  it('takes v1 when the cgroup2 hierarchy offers only hugetlb, and says why', async () => {
    const { fake, mountinfo } = machine('hugetlb\n', true);
    const s = await detectMemoryCgroups(fake.fs, mountinfo);
    expect(s).toMatchObject({ available: true, version: 1, root: `${fake.root}/memory` });
    expect(s.reason).toMatch(/offers only hugetlb: memory is bound to v1/);
  });

  it('takes v2 when its controllers include memory', async () => {
    const { fake, mountinfo } = machine('cpu io memory pids\n', false);
    expect(await detectMemoryCgroups(fake.fs, mountinfo)).toMatchObject({ available: true, version: 2, root: `${fake.root}/unified` });
  });

  it('says there is none when neither offers memory', async () => {
    const { fake, mountinfo } = machine('', false);
    const s = await detectMemoryCgroups(fake.fs, mountinfo);
    expect(s.available).toBe(false);
    expect(s.reason).toMatch(/no memory controller/);
    expect((await detectMemoryCgroups(fake.fs, '')).reason).toMatch(/no cgroup file system/);
  });
});
