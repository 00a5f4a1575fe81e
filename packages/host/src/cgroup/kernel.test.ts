// The cgroup layer on this machine's real kernel: a unique parent per run,
// removed afterwards. Skips with a printed reason where memory cgroups cannot
// be written (not root, no memory controller).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CgroupTree, memoryCgroupOfProc, openMemoryHierarchy, type MemoryCgroupSupport } from './index.js';

const MiB = 1048576;
const parentName = `memballoon-test-${process.pid}-${randomBytes(4).toString('hex')}`;
let tree: CgroupTree | undefined;
let support: MemoryCgroupSupport;
let skipReason = '';
const children: ChildProcess[] = [];

beforeAll(async () => {
  const opened = await openMemoryHierarchy(parentName);
  support = opened.support;
  if (!opened.tree) skipReason = support.reason;
  else if (process.getuid?.() !== 0) skipReason = 'not root: cannot create memory cgroups';
  else tree = opened.tree;
  if (skipReason) console.log(`cgroup kernel tests skipped: ${skipReason}`);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  if (!tree) return;
  for (const name of await tree.children()) await tree.remove(`${tree.parentDir}/${name}`);
  await tree.remove(tree.parentDir);
});

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('cgroup layer on the real kernel', () => {
  it('detects this machine honestly', () => {
    // This project's machine: v1 memory, a cgroup2 mount with hugetlb only.
    if (support.available && support.version === 1) expect(support.reason).toMatch(/cgroup v1 memory controller at \//);
    expect(support.reason.length).toBeGreaterThan(10);
  });

  it('creates a child, holds a process in it, limits it, refuses a limit below usage, removes it', async (ctx) => {
    if (!tree) return ctx.skip();
    await tree.ensureParent();
    const cg = await tree.createChild('vm1');
    await cg.setLimitBytes(64 * MiB);
    expect(await cg.limitBytes()).toBe(64 * MiB);
    // The kernel's own view of the file, not our parser's.
    expect(readFileSync(`${cg.dir}/${cg.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'}`, 'utf8').trim()).toBe(String(64 * MiB));

    // A process that touches 24 MiB once it is inside, then waits.
    const child = spawn(
      process.execPath,
      ['-e', "process.stdin.once('data', () => { globalThis.b = Buffer.alloc(24 * 1048576, 1); console.log('ok'); }); setInterval(() => {}, 1e6)"],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    children.push(child);
    await cg.addPid(child.pid!);
    expect(await cg.pids()).toContain(child.pid);
    const rel = memoryCgroupOfProc(readFileSync(`/proc/${child.pid}/cgroup`, 'utf8'), cg.version);
    expect(`${tree.root}${rel}`).toBe(cg.dir);
    child.stdin!.write('go\n');
    await until('the child to touch its memory', () => new Promise<true | undefined>((r) => child.stdout!.once('data', () => r(true))));
    const usage = await until('usage to show the touched pages', async () => ((await cg.usageBytes()) >= 24 * MiB ? cg.usageBytes() : undefined));
    expect(usage).toBeGreaterThanOrEqual(24 * MiB);
    // Below usage: the kernel answers EBUSY (v1), we refuse first (v2).
    await expect(cg.setLimitBytes(4 * MiB)).rejects.toMatchObject({ code: 'limit_below_usage' });
    expect(await cg.limitBytes()).toBe(64 * MiB);
    expect(await cg.oomKills()).toBe(0);
    expect(await cg.limitHits()).toBeGreaterThanOrEqual(0);

    await expect(tree.remove(cg.dir)).rejects.toMatchObject({ code: 'busy' });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await until('the cgroup to empty', async () => ((await cg.pids()).length === 0 ? true : undefined));
    await tree.remove(cg.dir);
    await expect(cg.usageBytes()).rejects.toMatchObject({ code: 'not_found' });
    expect(await tree.children()).toEqual([]);
  });

  it('counts an OOM kill when a process outgrows its limit', async (ctx) => {
    if (!tree) return ctx.skip();
    await tree.ensureParent();
    const cg = await tree.createChild('oom');
    await cg.setLimitBytes(48 * MiB);
    const hog = spawn(process.execPath, ['-e', "process.stdin.once('data', () => { const a = []; for (;;) a.push(Buffer.alloc(4 * 1048576, 1)); })"], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    children.push(hog);
    await cg.addPid(hog.pid!);
    hog.stdin!.write('go\n');
    const [, signal] = (await new Promise((r) => hog.once('exit', (...a) => r(a)))) as [number | null, string | null];
    expect(signal).toBe('SIGKILL');
    expect(await cg.oomKills()).toBeGreaterThanOrEqual(1);
    expect(await cg.limitHits()).toBeGreaterThan(0);
    await until('the cgroup to empty', async () => ((await cg.pids()).length === 0 ? true : undefined));
    await tree.remove(cg.dir);
  });

  // The tests above run on v2 where the machine offers it; this checks what only v2 has.
  it('v2: the parent hands the memory controller to its children', async (ctx) => {
    if (tree?.version !== 2) {
      console.log(`cgroup v2 kernel test skipped: ${support.available ? `this machine's memory controller is v1 (${support.reason})` : support.reason}`);
      return ctx.skip();
    }
    await tree.ensureParent();
    expect(readFileSync(`${tree.parentDir}/cgroup.subtree_control`, 'utf8').split(/\s+/)).toContain('memory');
    const cg = await tree.createChild('v2only');
    expect(readFileSync(`${cg.dir}/memory.max`, 'utf8').trim()).toBe('max');
    await tree.remove(cg.dir);
  });
});
