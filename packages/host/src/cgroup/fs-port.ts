// The file operations the cgroup layer needs, as a port: the kernel's cgroup
// file system in production, a plain directory tree in unit tests (where a new
// cgroup's control files must be made by hand).
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';

/** File operations on a cgroup file system. */
export interface CgroupFs {
  readText(path: string): Promise<string>;
  /** Writes one value, as `echo value > path` does (one write call). */
  writeText(path: string, text: string): Promise<void>;
  /** Creates one cgroup directory (the parent must exist). */
  makeDir(path: string): Promise<void>;
  /** Removes one cgroup directory (its control files go with it). */
  removeDir(path: string): Promise<void>;
  /** Names of the sub-directories (child cgroups). */
  listDirs(path: string): Promise<string[]>;
}

/** The real cgroup file system (rmdir of a cgroup works with its control files in it). */
export const kernelCgroupFs: CgroupFs = {
  readText: (path) => readFile(path, 'utf8'),
  writeText: (path, text) => writeFile(path, text, { flag: 'w' }),
  makeDir: async (path) => {
    await mkdir(path);
  },
  removeDir: (path) => rmdir(path),
  listDirs: async (path) => (await readdir(path, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name),
};
