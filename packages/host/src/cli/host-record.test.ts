import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { canonicalUrl, findHostRecord, hostRecordDir, hostRecordFile, writeHostRecord } from './host-record.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'memballoon-record-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('host records', () => {
  it('are found by the URL the host listens on, and removed by their writer', () => {
    const dir = join(tempDir(), 'run');
    const remove = writeHostRecord(dir, { url: 'http://127.0.0.1:7450', dataDir: '/data/demo', pid: process.pid });
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(hostRecordFile(dir, 'http://127.0.0.1:7450')).mode & 0o777).toBe(0o600);
    expect(findHostRecord(dir, 'http://127.0.0.1:7450/')).toEqual({ url: 'http://127.0.0.1:7450', dataDir: '/data/demo', pid: process.pid });
    expect(findHostRecord(dir, 'HTTP://127.0.0.1:7450')).toBeDefined();
    expect(findHostRecord(dir, 'http://127.0.0.1:7451')).toBeUndefined();
    expect(findHostRecord(dir, 'https://127.0.0.1:7450')).toBeUndefined();
    remove();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('are ignored once their host is gone, or when they are not records', () => {
    const dir = tempDir();
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeHostRecord(dir, { url: 'http://127.0.0.1:9', dataDir: '/x', pid: Number(gone.stdout) });
    expect(findHostRecord(dir, 'http://127.0.0.1:9')).toBeUndefined();
    writeFileSync(hostRecordFile(dir, 'http://127.0.0.1:10'), 'not json');
    expect(findHostRecord(dir, 'http://127.0.0.1:10')).toBeUndefined();
    writeFileSync(hostRecordFile(dir, 'http://127.0.0.1:11'), JSON.stringify({ url: 'http://127.0.0.1:12', dataDir: '/x', pid: process.pid }));
    expect(findHostRecord(dir, 'http://127.0.0.1:11')).toBeUndefined();
  });

  it('a later host on the same URL keeps its record when the earlier one exits', () => {
    const dir = tempDir();
    const removeOld = writeHostRecord(dir, { url: 'http://127.0.0.1:7450', dataDir: '/old', pid: 1 });
    writeHostRecord(dir, { url: 'http://127.0.0.1:7450', dataDir: '/new', pid: process.pid });
    removeOld();
    expect(findHostRecord(dir, 'http://127.0.0.1:7450')?.dataDir).toBe('/new');
  });

  it('live in MEMBALLOON_RUNTIME_DIR, else $XDG_RUNTIME_DIR/memballoon, else the state dir', () => {
    expect(hostRecordDir({ MEMBALLOON_RUNTIME_DIR: '/r', XDG_RUNTIME_DIR: '/run/user/0' })).toBe('/r');
    expect(hostRecordDir({ XDG_RUNTIME_DIR: '/run/user/0' })).toBe('/run/user/0/memballoon');
    expect(hostRecordDir({ XDG_STATE_HOME: '/s' })).toBe('/s/memballoon/hosts');
    expect(canonicalUrl('http://[::1]:80/')).toBe('http://[::1]:80');
  });
});
