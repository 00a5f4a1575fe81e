import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupError } from './errors.js';
import { fakeCgroupFs } from './test-fixtures.js';
import { cgroupNameProblem, CgroupTree } from './tree.js';

const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function tree(version: 1 | 2, parent = 'memballoon') {
  const fake = fakeCgroupFs(version);
  cleanups.push(fake.cleanup);
  return { fake, tree: new CgroupTree(fake.fs, fake.root, version, parent) };
}

describe('CgroupTree on a fake hierarchy', () => {
  it('v1: creates the parent and a VM child, reads and writes its files, removes it', async () => {
    const { fake, tree: t } = tree(1);
    await t.ensureParent();
    await t.ensureParent(); // idempotent
    const cg = await t.createChild('web');
    expect(cg.dir).toBe(`${fake.root}/memballoon/web`);
    expect(await cg.limitBytes()).toBeNull();
    await cg.setLimitBytes(256 * 1048576);
    expect(readFileSync(`${cg.dir}/memory.limit_in_bytes`, 'utf8')).toBe(String(256 * 1048576));
    expect(await cg.limitBytes()).toBe(256 * 1048576);
    await cg.setLimitBytes(null);
    expect(readFileSync(`${cg.dir}/memory.limit_in_bytes`, 'utf8')).toBe('-1');
    writeFileSync(`${cg.dir}/memory.oom_control`, 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    writeFileSync(`${cg.dir}/memory.failcnt`, '5\n');
    expect(await cg.oomKills()).toBe(2);
    expect(await cg.limitHits()).toBe(5);
    await cg.addPid(4242);
    expect(await cg.pids()).toEqual([4242]);
    await expect(t.remove(cg.dir)).rejects.toMatchObject({ code: 'busy' });
    writeFileSync(`${cg.dir}/cgroup.procs`, '');
    expect(await t.children()).toEqual(['web']);
    await t.remove(cg.dir);
    await t.remove(cg.dir); // already gone is fine
    expect(await t.children()).toEqual([]);
    await expect(t.createChild('web').then(() => t.createChild('web'))).rejects.toMatchObject({ code: 'already_exists' });
  });

  it('v2: enables memory for the children, writes max, and refuses a limit below usage it could not reclaim to without writing it', async () => {
    const { fake, tree: t } = tree(2, 'a/b');
    await t.ensureParent();
    expect(readFileSync(`${fake.root}/cgroup.subtree_control`, 'utf8')).toBe('+memory');
    expect(readFileSync(`${fake.root}/a/b/cgroup.subtree_control`, 'utf8')).toBe('+memory');
    const cg = await t.createChild('db');
    writeFileSync(`${cg.dir}/memory.current`, String(100 * 1048576));
    await cg.setLimitBytes(200 * 1048576);
    expect(readFileSync(`${cg.dir}/memory.max`, 'utf8')).toBe(String(200 * 1048576));
    const writes = fake.writes.length;
    await expect(cg.setLimitBytes(50 * 1048576)).rejects.toMatchObject({ code: 'limit_below_usage' });
    // It asked the kernel to reclaim the difference first (memory.reclaim; this fake has none), and wrote no limit.
    expect(fake.writes.slice(writes)).toEqual([{ path: `${cg.dir}/memory.reclaim`, text: String(50 * 1048576) }]);
    expect(readFileSync(`${cg.dir}/memory.max`, 'utf8')).toBe(String(200 * 1048576));
    // Where the reclaim brings usage down, the limit is written.
    writeFileSync(`${cg.dir}/memory.reclaim`, '');
    fake.fs.writeText = ((write) => async (path: string, text: string) => {
      await write(path, text);
      if (path.endsWith('/memory.reclaim')) writeFileSync(`${cg.dir}/memory.current`, String(40 * 1048576));
    })(fake.fs.writeText);
    await cg.setLimitBytes(50 * 1048576);
    expect(readFileSync(`${cg.dir}/memory.max`, 'utf8')).toBe(String(50 * 1048576));
    writeFileSync(`${cg.dir}/memory.current`, String(100 * 1048576));
    await cg.setLimitBytes(null);
    expect(readFileSync(`${cg.dir}/memory.max`, 'utf8')).toBe('max');
    writeFileSync(`${cg.dir}/memory.events`, 'low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n');
    expect(await cg.limitHits()).toBe(9);
    expect(await cg.oomKills()).toBe(1);
    expect(await cg.usageBytes()).toBe(100 * 1048576);
  });

  it('refuses bad limits, pids and names with a code', async () => {
    const { tree: t } = tree(1);
    await t.ensureParent();
    const cg = await t.createChild('x');
    for (const bad of [0, -1, 1.5, NaN, 2 ** 60]) await expect(cg.setLimitBytes(bad)).rejects.toMatchObject({ code: 'invalid_value' });
    await expect(cg.addPid(0)).rejects.toMatchObject({ code: 'invalid_value' });
    for (const name of ['.', '..', '.hidden', 'a/b', 'cgroup.procs', 'memory.limit_in_bytes', 'tasks', 'notify_on_release']) {
      expect(cgroupNameProblem(name)).toBeDefined();
      expect(() => t.childDir(name)).toThrow(CgroupError);
    }
    for (const name of ['web', 'web-1', 'db.2', 'Ünïcode vm', 'a_b']) expect(cgroupNameProblem(name)).toBeUndefined();
    expect(() => new CgroupTree(t.fs, t.root, 1, '../etc')).toThrow(/not a cgroup path/);
    expect(() => new CgroupTree(t.fs, t.root, 1, '')).toThrow(/empty/);
  });

  it('reads a missing cgroup as not_found', async () => {
    const { fake, tree: t } = tree(1);
    await expect(t.open(`${fake.root}/nope`).usageBytes()).rejects.toMatchObject({ code: 'not_found' });
  });

  it('adopts only directories inside the hierarchy, never through ..', async () => {
    const { fake, tree: t } = tree(1);
    await t.ensureParent();
    await t.createChild('box');
    expect((await t.adopt(`${fake.root}/memballoon/box`)).dir).toBe(`${fake.root}/memballoon/box`);
    expect((await t.adopt('memballoon/box')).dir).toBe(`${fake.root}/memballoon/box`);
    expect((await t.adopt(`${fake.root}//memballoon/box/`)).dir).toBe(`${fake.root}/memballoon/box`);
    await expect(t.adopt(`${fake.root}/memballoon/../memballoon/box`)).rejects.toMatchObject({ code: 'invalid_path' });
    await expect(t.adopt('/etc')).rejects.toMatchObject({ code: 'invalid_path' });
    await expect(t.adopt(`${fake.root}-other/x`)).rejects.toMatchObject({ code: 'invalid_path' });
    await expect(t.adopt(fake.root)).rejects.toMatchObject({ code: 'invalid_path' });
    await expect(t.adopt('')).rejects.toMatchObject({ code: 'invalid_path' });
    await expect(t.adopt('memballoon/none')).rejects.toMatchObject({ code: 'not_found' });
    expect(existsSync(`${fake.root}/memballoon/none`)).toBe(false);
  });
});
