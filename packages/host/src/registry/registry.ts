// The VM registry: the persisted settings of every VM (what VirtualBox keeps
// in its .vbox files) in one SQLite database under the data directory. WAL
// mode, so readers never wait for a writer; every failure is a HostError.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, constants, lstatSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { HostError } from '../errors.js';
import { claimDataDir } from './claim.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';

/** The persisted settings of one VM. */
export interface VmRecord {
  name: string;
  memoryMib: number;
  defaultBalloonMib: number;
  pageFusion: boolean;
  balloonPolicy: 'manual' | 'auto';
  memoryMinMib: number;
  balloonMaxMib: number;
  memoryWeight: number;
  memoryBufferPercent: number;
  /** Hash of the VM's guest token (see auth/tokens.ts); null: no token (auto-registered in demo mode). */
  tokenHash: string | null;
  createdAtMs: number;
}

/** Settings that modifyvm may change. */
export type VmSettings = Partial<Omit<VmRecord, 'name' | 'createdAtMs'>>;

/** The file name of the registry inside the data directory. */
export const REGISTRY_FILE = 'registry.sqlite';

/** SQLite's companions of the registry file: they exist only beside it. */
const SIDE_FILES = ['-wal', '-shm', '-journal'].map((s) => `${REGISTRY_FILE}${s}`);

/**
 * Files of the host that exist only once a registry was made (the admin
 * token is made after the registry at the first start): beside a missing
 * registry they mean the registry was lost, not that the directory is new.
 */
export const STATE_FILES: readonly string[] = ['admin.token', ...SIDE_FILES];

function exists(path: string): { size: number; link: boolean; uid: number } | undefined {
  try {
    const st = lstatSync(path);
    return { size: st.size, link: st.isSymbolicLink(), uid: st.uid };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Tells a fresh data directory (no registry, none of the host's other files:
 * made now) from a damaged one (an empty registry, or none beside the host's
 * other files), which is refused with what to do: an empty registry in its
 * place would drop every VM, and with --auto-register let the next guest
 * claim any name. Returns true when the registry must be created.
 */
export function registryIsFresh(dataDir: string): boolean {
  const path = join(dataDir, REGISTRY_FILE);
  const registry = exists(path);
  if (registry?.link)
    throw new HostError('storage', `${path} is a symbolic link; the host keeps its registry in the data directory itself: put the file there`);
  if (registry && registry.size === 0) {
    throw new HostError(
      'storage',
      `${path} is empty (0 bytes): the VM registry was lost or truncated. Restore it from a backup; or, to start again with no VMs, delete it and the files beside it (${STATE_FILES.join(', ')})`,
    );
  }
  if (registry) return false;
  const left = STATE_FILES.filter((f) => exists(join(dataDir, f)) !== undefined);
  if (left.length > 0) {
    throw new HostError(
      'storage',
      `${path} is missing but ${left.join(', ')} ${left.length === 1 ? 'is' : 'are'} still in ${dataDir}: the VM registry was lost. Restore it from a backup; or, to start again with no VMs, delete ${left.join(', ')}`,
    );
  }
  return true;
}

/**
 * Refuses a registry file that is a link or another user's: chmod and SQLite
 * follow links (a planted -wal link made the host, as root, chmod whatever it
 * named), and whoever owns the registry or its WAL can rewrite the guests'
 * token hashes.
 */
function assertOurs(path: string): void {
  const st = exists(path);
  if (st === undefined) return;
  if (st.link) throw new HostError('unsafe_file', `${path} is a symbolic link, which the host does not follow for its registry: remove it`);
  const uid = typeof process.geteuid === 'function' ? process.geteuid() : undefined;
  if (uid !== undefined && st.uid !== uid) {
    throw new HostError(
      'unsafe_file',
      `${path} belongs to user ${st.uid}, not to the user the host runs as (${uid}): whoever owns it can rewrite the VMs and their tokens; run chown ${uid} ${path}`,
    );
  }
}

const COLUMNS: Record<keyof VmSettings, string> = {
  memoryMib: 'memory_mib',
  defaultBalloonMib: 'default_balloon_mib',
  pageFusion: 'page_fusion',
  balloonPolicy: 'balloon_policy',
  memoryMinMib: 'memory_min_mib',
  balloonMaxMib: 'balloon_max_mib',
  memoryWeight: 'memory_weight',
  memoryBufferPercent: 'memory_buffer_percent',
  tokenHash: 'token_hash',
};

interface Row {
  name: string;
  memory_mib: number;
  default_balloon_mib: number;
  page_fusion: number;
  balloon_policy: 'manual' | 'auto';
  memory_min_mib: number;
  balloon_max_mib: number;
  memory_weight: number;
  memory_buffer_percent: number;
  token_hash: string | null;
  created_at_ms: number;
}

function fromRow(r: Row): VmRecord {
  return {
    name: r.name,
    memoryMib: r.memory_mib,
    defaultBalloonMib: r.default_balloon_mib,
    pageFusion: r.page_fusion === 1,
    balloonPolicy: r.balloon_policy,
    memoryMinMib: r.memory_min_mib,
    balloonMaxMib: r.balloon_max_mib,
    memoryWeight: r.memory_weight,
    memoryBufferPercent: r.memory_buffer_percent,
    tokenHash: r.token_hash,
    createdAtMs: r.created_at_ms,
  };
}

function storage<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof HostError) throw err;
    const code = (err as { code?: unknown }).code;
    if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
      throw new HostError('already_exists', `${what}: a VM of that name is already registered`, { cause: err });
    }
    throw new HostError('storage', `${what}: the VM registry failed (${String(code ?? 'error')}): ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
}

/** The VM registry over one SQLite file. */
export class Registry {
  private readonly db: Database.Database;
  private readonly stmts;
  /** Gives the data directory back (see claim.ts): one host per registry. */
  private readonly releaseClaim: () => void;

  /**
   * Opens the registry in `dataDir` (migrating it as needed), or creates it
   * in a fresh directory; a damaged one is refused (registryIsFresh). Its
   * files are 0600: they hold the guests' token hashes. ':memory:' for tests.
   */
  constructor(dataDir: string | ':memory:') {
    this.releaseClaim = dataDir === ':memory:' ? () => {} : claimDataDir(dataDir);
    try {
      this.db = this.openDb(dataDir);
      this.migrate();
    } catch (err) {
      const db = (this as unknown as { db?: Database.Database }).db;
      if (db?.open) db.close();
      this.releaseClaim();
      throw err;
    }
    this.stmts = {
      all: this.db.prepare<[], Row>('SELECT * FROM vms ORDER BY created_at_ms, name'),
      get: this.db.prepare<[string], Row>('SELECT * FROM vms WHERE name = ?'),
      insert: this.db.prepare('INSERT INTO vms (name, memory_mib, default_balloon_mib, page_fusion, token_hash, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)'),
      delete: this.db.prepare('DELETE FROM vms WHERE name = ?'),
      adopted: this.db.prepare<[string], { adopted_cgroup: string | null }>('SELECT adopted_cgroup FROM vms WHERE name = ?'),
      setAdopted: this.db.prepare('UPDATE vms SET adopted_cgroup = ? WHERE name = ?'),
    };
  }

  private openDb(dataDir: string | ':memory:'): Database.Database {
    const opened = storage('opening the registry', () => {
      if (dataDir === ':memory:') return new Database(':memory:');
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const path = join(dataDir, REGISTRY_FILE);
      // SQLite gives its -wal and -shm files the mode of the database file,
      // so the file is made 0600 before SQLite first opens it.
      if (registryIsFresh(dataDir)) closeSync(openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600));
      for (const f of [REGISTRY_FILE, ...SIDE_FILES]) assertOurs(join(dataDir, f));
      for (const f of [REGISTRY_FILE, ...SIDE_FILES]) {
        if (exists(join(dataDir, f))) chmodSync(join(dataDir, f), 0o600);
      }
      return new Database(path, { fileMustExist: true });
    });
    try {
      storage('opening the registry', () => {
        opened.pragma('journal_mode = WAL');
        // A second process on the same file waits a little instead of failing at once.
        opened.pragma('busy_timeout = 2000');
        opened.pragma('foreign_keys = ON');
      });
    } catch (err) {
      opened.close();
      throw err;
    }
    return opened;
  }

  /** The schema version of the open database. */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    storage('migrating the registry', () => {
      const current = this.db.pragma('user_version', { simple: true }) as number;
      if (current > SCHEMA_VERSION) {
        throw new HostError('storage', `the registry has schema version ${current}, newer than this host understands (${SCHEMA_VERSION})`);
      }
      for (const m of MIGRATIONS) {
        if (m.version <= current) continue;
        this.db.transaction(() => {
          this.db.exec(m.sql);
          this.db.pragma(`user_version = ${m.version}`);
        })();
      }
    });
  }

  /** Every registered VM, oldest first. */
  list(): VmRecord[] {
    return storage('listing VMs', () => this.stmts.all.all().map(fromRow));
  }

  /** A VM's settings, or undefined. */
  find(name: string): VmRecord | undefined {
    const row = storage('reading a VM', () => this.stmts.get.get(name));
    return row && fromRow(row);
  }

  /** A VM's settings, or a not_found HostError. */
  get(name: string): VmRecord {
    const vm = this.find(name);
    if (!vm) throw new HostError('not_found', `Could not find a registered machine named '${name}'`);
    return vm;
  }

  /** Registers a VM; already_exists if the name is taken. */
  create(vm: { name: string; memoryMib: number; defaultBalloonMib?: number; pageFusion?: boolean; tokenHash?: string | null }, nowMs: number): VmRecord {
    storage(`registering VM '${vm.name}'`, () =>
      this.stmts.insert.run(vm.name, vm.memoryMib, vm.defaultBalloonMib ?? 0, vm.pageFusion ? 1 : 0, vm.tokenHash ?? null, nowMs),
    );
    return this.get(vm.name);
  }

  /** Changes settings of a VM; returns the new record. */
  update(name: string, settings: VmSettings): VmRecord {
    const entries = Object.entries(settings).filter(([, v]) => v !== undefined) as Array<[keyof VmSettings, unknown]>;
    if (entries.length > 0) {
      const sql = `UPDATE vms SET ${entries.map(([k]) => `${COLUMNS[k]} = ?`).join(', ')} WHERE name = ?`;
      const values = entries.map(([, v]) => (typeof v === 'boolean' ? (v ? 1 : 0) : v));
      const info = storage(`modifying VM '${name}'`, () => this.db.prepare(sql).run(...values, name));
      if (info.changes === 0) throw new HostError('not_found', `Could not find a registered machine named '${name}'`);
    }
    return this.get(name);
  }

  /** The cgroup directory modifyvm --cgroup adopted for a VM's guest: null for none, undefined when the VM is not registered. */
  adoptedCgroup(name: string): string | null | undefined {
    const row = storage('reading a VM', () => this.stmts.adopted.get(name));
    return row ? row.adopted_cgroup : undefined;
  }

  /** Notes (or, with null, clears) the cgroup adopted for a VM's guest; not_found if it is not registered. */
  setAdoptedCgroup(name: string, cgroupDir: string | null): void {
    const info = storage(`modifying VM '${name}'`, () => this.stmts.setAdopted.run(cgroupDir, name));
    if (info.changes === 0) throw new HostError('not_found', `Could not find a registered machine named '${name}'`);
  }

  /** Unregisters a VM; not_found if it is not registered. */
  remove(name: string): void {
    const info = storage(`unregistering VM '${name}'`, () => this.stmts.delete.run(name));
    if (info.changes === 0) throw new HostError('not_found', `Could not find a registered machine named '${name}'`);
  }

  /** Closes the database (checkpointing the WAL). */
  close(): void {
    if (this.db.open) this.db.close();
    this.releaseClaim();
  }
}
