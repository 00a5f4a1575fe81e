// A fake cgroup file system for unit tests: a temporary directory tree where
// making a cgroup also makes its control files, as the kernel does.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { access, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CgroupFs } from './fs-port.js';
import type { CgroupVersion } from './memory-cgroup.js';

/** Control files of a new cgroup, as the kernel shows them. */
export const FRESH_FILES: Record<CgroupVersion, Record<string, string>> = {
  1: {
    'memory.limit_in_bytes': '9223372036854771712\n',
    'memory.usage_in_bytes': '0\n',
    'memory.failcnt': '0\n',
    'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n',
    'cgroup.procs': '',
  },
  2: {
    'memory.max': 'max\n',
    'memory.current': '0\n',
    'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n',
    'cgroup.procs': '',
    'cgroup.subtree_control': '',
    'cgroup.controllers': 'memory\n',
  },
};

/** A fake hierarchy rooted in a temporary directory; `writes` records every write, in order. */
export function fakeCgroupFs(version: CgroupVersion): { fs: CgroupFs; root: string; writes: Array<{ path: string; text: string }>; cleanup(): void } {
  const root = mkdtempSync(join(tmpdir(), 'fake-cgroup-'));
  const fill = (dir: string) => {
    for (const [name, text] of Object.entries(FRESH_FILES[version])) writeFileSync(join(dir, name), text);
  };
  mkdirSync(root, { recursive: true });
  fill(root);
  const writes: Array<{ path: string; text: string }> = [];
  const fs: CgroupFs = {
    readText: (path) => readFile(path, 'utf8'),
    writeText: async (path, text) => {
      writes.push({ path, text });
      // Like a control file, a missing file is ENOENT, not created.
      await access(path);
      await writeFile(path, text);
    },
    makeDir: async (path) => {
      await mkdir(path);
      fill(path);
    },
    removeDir: async (path) => {
      const subdirs = (await readdir(path, { withFileTypes: true })).filter((d) => d.isDirectory());
      if (subdirs.length > 0 || (await readFile(join(path, 'cgroup.procs'), 'utf8')).trim() !== '') {
        throw Object.assign(new Error(`EBUSY: ${path}`), { code: 'EBUSY' });
      }
      await rm(path, { recursive: true });
    },
    listDirs: async (path) => (await readdir(path, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name),
  };
  return { fs, root, writes, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}
