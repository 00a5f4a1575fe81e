import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { HostError } from '../errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';
import { Registry, REGISTRY_FILE } from './registry.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'memballoon-registry-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('Registry', () => {
  it('creates, reads, modifies and removes VMs', () => {
    const reg = new Registry(':memory:');
    const a = reg.create({ name: 'alpha', memoryMib: 512 }, 1);
    expect(a).toMatchObject({
      name: 'alpha',
      memoryMib: 512,
      defaultBalloonMib: 0,
      pageFusion: false,
      balloonPolicy: 'manual',
      memoryWeight: 100,
      memoryBufferPercent: 20,
    });
    reg.create({ name: 'beta', memoryMib: 1024 }, 2);
    expect(reg.list().map((v) => v.name)).toEqual(['alpha', 'beta']);
    expect(reg.update('alpha', { defaultBalloonMib: 128, pageFusion: true, balloonPolicy: 'auto', memoryMinMib: 64 })).toMatchObject({
      defaultBalloonMib: 128,
      pageFusion: true,
      balloonPolicy: 'auto',
      memoryMinMib: 64,
    });
    reg.remove('alpha');
    expect(reg.find('alpha')).toBeUndefined();
    reg.close();
  });

  it('names its errors', () => {
    const reg = new Registry(':memory:');
    reg.create({ name: 'a', memoryMib: 1 }, 1);
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as HostError).code;
      }
      return undefined;
    };
    expect(code(() => reg.create({ name: 'a', memoryMib: 1 }, 1))).toBe('already_exists');
    expect(code(() => reg.get('zz'))).toBe('not_found');
    expect(code(() => reg.update('zz', { memoryMib: 2 }))).toBe('not_found');
    expect(code(() => reg.remove('zz'))).toBe('not_found');
    expect(code(() => reg.update('a', { memoryWeight: 0 }))).toBe('storage');
    reg.close();
  });

  it('persists across reopening, in WAL mode, at the newest schema', () => {
    const dir = tempDir();
    const reg = new Registry(dir);
    reg.create({ name: 'vm one', memoryMib: 768, defaultBalloonMib: 100 }, 5);
    reg.close();
    const again = new Registry(dir);
    expect(again.get('vm one')).toMatchObject({ memoryMib: 768, defaultBalloonMib: 100 });
    expect(again.schemaVersion).toBe(SCHEMA_VERSION);
    again.close();
    const raw = new Database(join(dir, REGISTRY_FILE));
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();
  });

  it('migrates a version-1 database, keeping its rows', () => {
    const dir = tempDir();
    const raw = new Database(join(dir, REGISTRY_FILE));
    raw.exec(MIGRATIONS[0]!.sql);
    raw.pragma('user_version = 1');
    raw.prepare('INSERT INTO vms (name, memory_mib, default_balloon_mib, page_fusion, created_at_ms) VALUES (?, ?, ?, ?, ?)').run('old', 256, 32, 1, 1);
    raw.close();
    const reg = new Registry(dir);
    expect(reg.get('old')).toMatchObject({ memoryMib: 256, defaultBalloonMib: 32, pageFusion: true, balloonPolicy: 'manual', memoryWeight: 100 });
    reg.close();
  });

  it('refuses a database newer than it understands', () => {
    const dir = tempDir();
    const raw = new Database(join(dir, REGISTRY_FILE));
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => new Registry(dir)).toThrow(/newer than this host understands/);
  });
});

describe('a fresh data directory, told from a damaged one', () => {
  const codeOf = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(HostError);
      return (err as HostError).code;
    }
    return 'no error';
  };

  it('makes the registry in an empty or new directory, its files 0600, and opens it again', () => {
    const dir = join(tempDir(), 'new');
    const reg = new Registry(dir);
    reg.create({ name: 'a', memoryMib: 64 }, 1);
    for (const f of [REGISTRY_FILE, `${REGISTRY_FILE}-wal`, `${REGISTRY_FILE}-shm`]) {
      expect(existsSync(join(dir, f)), f).toBe(true);
      expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
    }
    reg.close();
    writeFileSync(join(dir, 'admin.token'), 'x', { mode: 0o600 });
    const again = new Registry(dir);
    expect(again.list().map((v) => v.name)).toEqual(['a']);
    again.close();
  });

  it('makes an existing registry and its companions 0600 (they were 0644)', () => {
    const dir = tempDir();
    new Registry(dir).close();
    chmodSync(join(dir, REGISTRY_FILE), 0o644);
    const reg = new Registry(dir);
    reg.create({ name: 'b', memoryMib: 64 }, 1);
    for (const f of [REGISTRY_FILE, `${REGISTRY_FILE}-wal`, `${REGISTRY_FILE}-shm`]) expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
    reg.close();
  });

  it('refuses a zero-byte registry, and leaves it as it was', () => {
    const dir = tempDir();
    writeFileSync(join(dir, REGISTRY_FILE), '');
    expect(codeOf(() => new Registry(dir))).toBe('storage');
    expect(() => new Registry(dir)).toThrow(/registry\.sqlite is empty \(0 bytes\).*Restore it from a backup/);
    expect(statSync(join(dir, REGISTRY_FILE)).size).toBe(0);
  });

  it('refuses a missing registry beside the admin token or its WAL, and creates nothing', () => {
    for (const left of ['admin.token', `${REGISTRY_FILE}-wal`]) {
      const dir = tempDir();
      writeFileSync(join(dir, left), 'x', { mode: 0o600 });
      expect(() => new Registry(dir), left).toThrow(new RegExp(`registry\\.sqlite is missing but ${left.replace('.', '\\.')} is still in`));
      expect(existsSync(join(dir, REGISTRY_FILE))).toBe(false);
    }
  });

  it('refuses a registry that is a symbolic link', () => {
    const dir = tempDir();
    const elsewhere = join(tempDir(), 'elsewhere.sqlite');
    new Registry(join(elsewhere, '..')).close();
    symlinkSync(join(elsewhere, '..', REGISTRY_FILE), join(dir, REGISTRY_FILE));
    expect(() => new Registry(dir)).toThrow(/is a symbolic link/);
  });
});
