// The host's subtree of the memory hierarchy: its parent cgroup (the pool),
// one child per managed VM, and the checks that keep every path inside it.
import { isAbsolute, normalize, relative } from 'node:path';
import { CgroupError, errnoOf } from './errors.js';
import type { CgroupFs } from './fs-port.js';
import { KernelMemoryCgroup } from './kernel-cgroup.js';
import type { CgroupVersion } from './memory-cgroup.js';

/** Default name of the host's parent cgroup (`--cgroup-parent`). */
export const DEFAULT_CGROUP_PARENT = 'memballoon';

/** Files every cgroup directory holds besides `<controller>.<name>` files (v1). */
const RESERVED = new Set(['tasks', 'notify_on_release', 'release_agent']);

/**
 * Why a name cannot be one cgroup directory, or undefined if it can. Refused:
 * `.`/`..`, hidden names, `/`, control-file shapes (`memory.max`, `cgroup.procs`,
 * `tasks`): a VM named like a control file must not make the host write it.
 */
export function cgroupNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 200) return 'it is empty or too long';
  if (name.startsWith('.')) return "it starts with '.'";
  if (/[/\0\n]/.test(name)) return "it holds '/', a NUL or a newline";
  if (RESERVED.has(name) || /^[a-z_]+\.[a-z_.]+$/.test(name)) return "it is shaped like one of the kernel's control files";
  return undefined;
}

/**
 * Checks a relative cgroup path (`memballoon`, `machines/memballoon`). Paths
 * the host creates: every segment a valid new name; paths it adopts
 * (`system.slice/x.scope`): no `.`, `..`, NUL or newline (that it is a
 * directory with memory files is checked on the file system).
 */
export function checkRelativePath(path: string, what: string, mode: 'create' | 'adopt' = 'create'): string {
  const segments = path.split('/').filter((s) => s !== '');
  if (segments.length === 0) throw new CgroupError('invalid_path', `${what} '${path}' is empty`);
  for (const s of segments) {
    const problem =
      mode === 'create'
        ? cgroupNameProblem(s)
        : s === '.' || s === '..'
          ? `'${s}' is not a name`
          : /[\0\n]/.test(s)
            ? 'it holds a NUL or a newline'
            : undefined;
    if (problem) throw new CgroupError('invalid_path', `${what} '${path}' is not a cgroup path: '${s}': ${problem}`);
  }
  return segments.join('/');
}

/** The memory hierarchy and the host's parent cgroup in it. */
export class CgroupTree {
  /** Absolute directory of the parent (the pool cgroup). */
  readonly parentDir: string;

  constructor(
    readonly fs: CgroupFs,
    /** Mount point of the memory hierarchy. */
    readonly root: string,
    readonly version: CgroupVersion,
    parentName: string,
  ) {
    this.parentDir = `${root}/${checkRelativePath(parentName, 'the cgroup parent')}`;
  }

  /** The parent cgroup (the pool). */
  parent(): KernelMemoryCgroup {
    return new KernelMemoryCgroup(this.parentDir, this.version, this.fs);
  }

  /** The VM's cgroup directory under the parent. */
  childDir(vmName: string): string {
    const problem = cgroupNameProblem(vmName);
    if (problem) throw new CgroupError('invalid_path', `VM '${vmName}' cannot name a cgroup: ${problem}`);
    return `${this.parentDir}/${vmName}`;
  }

  /** Opens any cgroup of the hierarchy by absolute directory (checked by resolveInside first). */
  open(dir: string): KernelMemoryCgroup {
    return new KernelMemoryCgroup(dir, this.version, this.fs);
  }

  /** Creates the parent (and its ancestors) if missing; v2 also enables memory for its children. */
  async ensureParent(): Promise<KernelMemoryCgroup> {
    const segments = relative(this.root, this.parentDir).split('/');
    let dir = this.root;
    for (const s of segments) {
      if (this.version === 2) await this.enableMemoryBelow(dir);
      dir = `${dir}/${s}`;
      await this.makeDirIfMissing(dir);
    }
    if (this.version === 2) await this.enableMemoryBelow(dir);
    return this.parent();
  }

  /** Creates the VM's cgroup; already_exists if it is there. */
  async createChild(vmName: string): Promise<KernelMemoryCgroup> {
    const dir = this.childDir(vmName);
    try {
      await this.fs.makeDir(dir);
    } catch (err) {
      throw CgroupError.from(err);
    }
    return this.open(dir);
  }

  /** Names of the VM cgroups under the parent ([] when the parent does not exist). */
  async children(): Promise<string[]> {
    try {
      return await this.fs.listDirs(this.parentDir);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return [];
      throw CgroupError.from(err);
    }
  }

  /** Removes an (empty) cgroup; busy while a process is still in it, fine if already gone. */
  async remove(dir: string): Promise<void> {
    try {
      await this.fs.removeDir(dir);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'ENOENT') return;
      if (errno === 'EBUSY' || errno === 'ENOTEMPTY')
        throw new CgroupError('busy', `cannot remove ${dir}: processes or child cgroups are still in it`, { cause: err });
      throw CgroupError.from(err);
    }
  }

  /**
   * An admin's cgroup path (`modifyvm --cgroup`) as an absolute directory
   * inside the memory hierarchy: absolute paths must lie under its mount
   * point, relative ones are taken from it; `..` is refused, not resolved.
   */
  resolveInside(path: string): string {
    if (typeof path !== 'string' || path.trim() === '') throw new CgroupError('invalid_path', 'the cgroup path is empty');
    if (path.split('/').includes('..')) throw new CgroupError('invalid_path', `the cgroup path '${path}' holds '..'`);
    const abs = isAbsolute(path) ? normalize(path) : `${this.root}/${path}`;
    const rel = isAbsolute(path) && (abs === this.root || abs.startsWith(`${this.root}/`)) ? relative(this.root, abs) : isAbsolute(path) ? undefined : path;
    if (rel === undefined) throw new CgroupError('invalid_path', `the cgroup path '${path}' is not inside the memory hierarchy at ${this.root}`);
    if (rel === '') throw new CgroupError('invalid_path', `the cgroup path '${path}' is the root of the memory hierarchy, not a guest's cgroup`);
    return `${this.root}/${checkRelativePath(rel, 'the cgroup path', 'adopt')}`;
  }

  /** Opens an existing cgroup for adoption: a directory of the hierarchy with its memory limit file. */
  async adopt(path: string): Promise<KernelMemoryCgroup> {
    const cg = this.open(this.resolveInside(path));
    try {
      await cg.limitBytes();
    } catch (err) {
      const e = CgroupError.from(err);
      if (e.code === 'not_found') throw new CgroupError('not_found', `the cgroup ${cg.dir} does not exist (or has no memory controller)`, { cause: err });
      throw e;
    }
    return cg;
  }

  private async makeDirIfMissing(dir: string): Promise<void> {
    try {
      await this.fs.makeDir(dir);
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw CgroupError.from(err);
    }
  }

  private async enableMemoryBelow(dir: string): Promise<void> {
    const file = `${dir}/cgroup.subtree_control`;
    try {
      const enabled = (await this.fs.readText(file)).split(/\s+/);
      if (!enabled.includes('memory')) await this.fs.writeText(file, '+memory');
    } catch (err) {
      throw CgroupError.from(err);
    }
  }
}
