// The thin edge to /sys/kernel/mm/ksm: read the counters, write run,
// pages_to_scan and sleep_millisecs, and put back what was there before.
// Writes only what differs from the kernel's current values (as MOM's KSM
// controller does), so a steady decision costs no writes. ksmd's nice (see
// ksmd-thread.ts) is saved and restored with the rest.
//
// One driver per machine: KSM is global, and two drivers that each save and
// restore would leave it as the later one found it (on, say). A lock file
// holding the driver's pid keeps a second host (or a second test) off until
// the first has restored; a lock whose pid is gone is taken over. The lock
// also holds the settings its driver found, so a driver that died (kill -9)
// does not make its own settings the next driver's "original": the next one
// inherits what the dead one found, and restores that.
import { accessSync, closeSync, constants, existsSync, openSync, readFileSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostError } from '../errors.js';
import type { KsmSettings } from './ksm-policy.js';
import { findKsmd, type KsmdThread } from './ksmd-thread.js';

/** Where the kernel exposes KSM. */
export const KSM_SYSFS_DIR = '/sys/kernel/mm/ksm';

/** The machine-wide lock of the KSM driver. */
export const DEFAULT_KSM_LOCK_PATH = join(tmpdir(), 'memballoon-ksm-driver.lock');

/** The kernel's KSM settings and counters. */
export interface KsmState extends KsmSettings {
  pagesShared: number;
  pagesSharing: number;
  pagesUnshared: number;
  fullScans: number;
}

/** Whether KSM can be driven here, and if not, why. */
export type KsmProbe = { ok: true } | { ok: false; detail: string };

/** Options of KsmSysfs. */
export interface KsmSysfsOptions {
  dir?: string;
  lockPath?: string;
  /** Reports whether a pid lives (the lock's owner); tests inject one. */
  isAlive?: (pid: number) => boolean;
  /** ksmd, whose nice the settings may change (default: the real one for the real directory, none for another). */
  ksmd?: KsmdThread | null;
}

/** Checks that KSM exists and may be written (Linux, CONFIG_KSM, root). */
export function probeKsm(dir = KSM_SYSFS_DIR, platform: string = process.platform): KsmProbe {
  if (platform !== 'linux') return { ok: false, detail: `KSM is Linux-only (this host runs ${platform}); page fusion hints still work` };
  if (!existsSync(join(dir, 'run'))) return { ok: false, detail: `this kernel has no KSM (${dir} is missing); page fusion hints still work` };
  try {
    accessSync(join(dir, 'run'), constants.W_OK);
  } catch {
    return { ok: false, detail: `${join(dir, 'run')} is not writable (KSM needs root); page fusion hints still work` };
  }
  return { ok: true };
}

function defaultIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Reads and writes /sys/kernel/mm/ksm; restore() puts back the settings found before the first write. */
export class KsmSysfs {
  readonly dir: string;
  readonly lockPath: string;
  readonly #isAlive: (pid: number) => boolean;
  /** ksmd, null where there is none (or a fake directory): its nice is then never touched. */
  readonly ksmd: KsmdThread | null;
  // pid and a token: two drivers in one process (two hosts in one test) must
  // not take each other's lock for a stale one.
  readonly #owner = `${process.pid} ${randomUUID()}`;
  #saved: KsmSettings | null = null;

  constructor(opts: KsmSysfsOptions = {}) {
    this.dir = opts.dir ?? KSM_SYSFS_DIR;
    this.lockPath = opts.lockPath ?? DEFAULT_KSM_LOCK_PATH;
    this.#isAlive = opts.isAlive ?? defaultIsAlive;
    this.ksmd = opts.ksmd !== undefined ? opts.ksmd : this.dir === KSM_SYSFS_DIR ? findKsmd() : null;
  }

  /** Whether this driver holds the lock and has settings to restore. */
  get driving(): boolean {
    return this.#saved !== null;
  }

  /** The settings saved before the first write (null while not driving). */
  get saved(): KsmSettings | null {
    return this.#saved;
  }

  /** Reads settings and counters. Throws HostError('ksm_io'). */
  read(): KsmState {
    const nice = this.#nice();
    return {
      ...(nice === undefined ? {} : { ksmdNice: nice }),
      run: this.#num('run') === 1,
      pagesToScan: this.#num('pages_to_scan'),
      sleepMillisecs: this.#num('sleep_millisecs'),
      pagesShared: this.#num('pages_shared'),
      pagesSharing: this.#num('pages_sharing'),
      pagesUnshared: this.#num('pages_unshared'),
      fullScans: this.#num('full_scans'),
    };
  }

  /**
   * Writes the settings that differ from the kernel's. The first call takes
   * the machine-wide lock and saves the current settings. Throws
   * HostError('ksm_unavailable') when another driver holds the lock,
   * HostError('ksm_io') when a write fails.
   */
  apply(settings: KsmSettings): void {
    if (!this.#saved) {
      const inherited = this.#lock();
      try {
        const now = this.read();
        const saved = inherited ?? {
          run: now.run,
          pagesToScan: now.pagesToScan,
          sleepMillisecs: now.sleepMillisecs,
          ...(now.ksmdNice === undefined ? {} : { ksmdNice: now.ksmdNice }),
        };
        writeFileSync(this.lockPath, `${this.#owner}\n${JSON.stringify(saved)}\n`);
        this.#saved = saved;
      } catch (err) {
        this.#unlock();
        throw HostError.from(err, 'ksm_io');
      }
    }
    this.#write(settings);
  }

  /** Puts back the saved settings and lets go of the lock. Idempotent; throws HostError('ksm_io') if a write fails. */
  restore(): void {
    const saved = this.#saved;
    if (!saved) return;
    try {
      this.#write(saved);
    } finally {
      this.#saved = null;
      this.#unlock();
    }
  }

  #write(s: KsmSettings): void {
    const now = this.read();
    // ksmd's nice is the found one unless the settings raise it (a burst).
    const nice = s.ksmdNice ?? this.#saved?.ksmdNice;
    if (this.ksmd && nice !== undefined && now.ksmdNice !== nice) {
      try {
        this.ksmd.setNice(nice);
      } catch (err) {
        throw new HostError('ksm_io', `cannot set ksmd's nice to ${nice}: ${(err as Error).message}`, { cause: err });
      }
    }
    // Rate first, run last: ksmd wakes with the new rate already in place.
    if (now.pagesToScan !== s.pagesToScan) this.#put('pages_to_scan', s.pagesToScan);
    if (now.sleepMillisecs !== s.sleepMillisecs) this.#put('sleep_millisecs', s.sleepMillisecs);
    if (now.run !== s.run) this.#put('run', s.run ? 1 : 0);
  }

  #nice(): number | undefined {
    try {
      return this.ksmd?.nice();
    } catch {
      return undefined;
    }
  }

  #num(name: string): number {
    try {
      return Number.parseInt(readFileSync(join(this.dir, name), 'utf8'), 10) || 0;
    } catch (err) {
      throw new HostError('ksm_io', `cannot read ${join(this.dir, name)}: ${(err as Error).message}`, { cause: err });
    }
  }

  #put(name: string, value: number): void {
    try {
      writeFileSync(join(this.dir, name), `${value}\n`);
    } catch (err) {
      throw new HostError('ksm_io', `cannot write ${value} to ${join(this.dir, name)}: ${(err as Error).message}`, { cause: err });
    }
  }

  // Takes the lock; returns the settings a dead driver had found, if it took over its lock.
  #lock(): KsmSettings | null {
    let inherited: KsmSettings | null = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(this.lockPath, 'wx', 0o644);
        writeSync(fd, `${this.#owner}\n`);
        closeSync(fd);
        return inherited;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
          throw new HostError('ksm_io', `cannot create ${this.lockPath}: ${(err as Error).message}`, { cause: err });
      }
      const text = safeRead(this.lockPath);
      const owner = Number.parseInt(text, 10);
      if (Number.isInteger(owner) && owner > 0 && this.#isAlive(owner)) {
        throw new HostError('ksm_unavailable', `KSM is driven by another memballoon host (pid ${owner}, lock ${this.lockPath})`);
      }
      // Its owner is gone: take it over, with what it had found.
      inherited = parseSaved(text.split('\n')[1] ?? '') ?? inherited;
      try {
        unlinkSync(this.lockPath);
      } catch {
        /* someone else took it over first; the next attempt tells */
      }
    }
    throw new HostError('ksm_unavailable', `KSM's driver lock ${this.lockPath} is contended`);
  }

  #unlock(): void {
    if (safeRead(this.lockPath).split('\n')[0] !== this.#owner) return;
    try {
      unlinkSync(this.lockPath);
    } catch {
      /* already gone */
    }
  }
}

function parseSaved(line: string): KsmSettings | null {
  try {
    const v = JSON.parse(line) as Partial<KsmSettings>;
    if (typeof v.run === 'boolean' && Number.isSafeInteger(v.pagesToScan) && Number.isSafeInteger(v.sleepMillisecs)) {
      const nice = Number.isSafeInteger(v.ksmdNice) ? { ksmdNice: v.ksmdNice! } : {};
      return { run: v.run, pagesToScan: v.pagesToScan!, sleepMillisecs: v.sleepMillisecs!, ...nice };
    }
  } catch {
    /* an older or damaged lock: nothing to inherit */
  }
  return null;
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
