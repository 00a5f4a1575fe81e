// What the host writes down about each guest it owns, so that a host killed
// -9 and restarted finds its guests again: one JSON file a VM under
// <data-dir>/guests/, written before the guest can connect, removed at poweroff.
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostError } from '../errors.js';

/** The record of one managed guest. */
export interface GuestRecord {
  name: string;
  /** 'startvm': the host started it; 'adopted': modifyvm --cgroup. */
  kind: 'startvm' | 'adopted';
  /** Absolute cgroup directory, or null (process mode). */
  cgroupDir: string | null;
  /** The agent's pid and start time (startvm only). */
  agentPid?: number;
  agentStartTicks?: number;
  /** Hash of the token the host gave this launch (auth/tokens.ts hashToken). */
  launchTokenHash?: string;
  /** The workload's log (startvm only). */
  logFile?: string;
  /** The command line and user, for showvminfo. */
  command?: string[];
  user?: string;
  startedAtMs?: number;
  /**
   * An adopted cgroup's hard limit before the host adopted it (bytes; null:
   * none), given back whenever the VM powers off, even by a later host.
   * Absent in records of hosts that did not keep it.
   */
  limitBeforeAdoptionBytes?: number | null;
}

/** The files of the managed guests' records. */
export class GuestStateDir {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'guests');
  }

  /** The file of a VM's record. */
  fileOf(name: string): string {
    return this.file(name);
  }

  private file(name: string): string {
    // VM names hold no '/' (protocol VM_NAME_PATTERN); encode anyway so that
    // no name can leave the directory.
    return join(this.dir, `${encodeURIComponent(name)}.json`);
  }

  /** Writes a record atomically (rename), mode 0600: it holds a token hash. */
  save(record: GuestRecord): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (!lstatSync(this.dir).isDirectory())
      throw new HostError('unsafe_file', `${this.dir} is not a directory (a symbolic link?): remove it and the host makes it`);
    const tmp = `${this.file(record.name)}.tmp`;
    // Made afresh (wx), never written through: a link left at the temporary
    // name had the host, as root, write the record into the file it named.
    rmSync(tmp, { force: true });
    writeFileSync(tmp, JSON.stringify(record), { mode: 0o600, flag: 'wx' });
    renameSync(tmp, this.file(record.name));
  }

  remove(name: string): void {
    rmSync(this.file(name), { force: true });
  }

  /** Every readable record; unreadable files are reported, not fatal. */
  loadAll(onBad: (file: string, err: unknown) => void): GuestRecord[] {
    let files: string[];
    try {
      files = readdirSync(this.dir).filter((f) => f.endsWith('.json'));
    } catch {
      return [];
    }
    const out: GuestRecord[] = [];
    for (const f of files) {
      try {
        const r = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as GuestRecord;
        if (typeof r.name !== 'string' || (r.kind !== 'startvm' && r.kind !== 'adopted')) throw new Error('not a guest record');
        out.push(r);
      } catch (err) {
        onBad(join(this.dir, f), err);
      }
    }
    return out;
  }
}
