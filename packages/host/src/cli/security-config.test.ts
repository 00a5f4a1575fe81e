// The security flags of balloon-host and where balloonctl finds the admin token.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../config.js';
import { HostError } from '../errors.js';
import { loadCtlConfig } from './ctl-config.js';
import { writeHostRecord } from './host-record.js';

// Every temp dir of this file, removed at the end even when a test fails midway.
const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('balloon-host security flags', () => {
  it('are off by default and read from flags and env', () => {
    const d = loadHostConfig([], {}, false);
    expect(d).toMatchObject({ tlsCertPath: undefined, tlsKeyPath: undefined, insecureNoAuth: false, allowInsecureListen: false });
    const c = loadHostConfig(['--tls-cert', 'c.pem', '--tls-key=k.pem', '--insecure-no-auth', '--allow-insecure-listen'], {}, false);
    expect(c).toMatchObject({ tlsCertPath: 'c.pem', tlsKeyPath: 'k.pem', insecureNoAuth: true, allowInsecureListen: true });
    expect(loadHostConfig([], { MEMBALLOON_TLS_CERT: 'a', MEMBALLOON_TLS_KEY: 'b' }, false)).toMatchObject({ tlsCertPath: 'a', tlsKeyPath: 'b' });
  });

  it('refuses a certificate without its key (and the reverse)', () => {
    expect(() => loadHostConfig(['--tls-cert', 'c.pem'], {}, false)).toThrow(/--tls-cert and --tls-key go together/);
    expect(() => loadHostConfig(['--tls-key', 'k.pem'], {}, false)).toThrow(/go together/);
  });
});

describe('balloonctl admin token', () => {
  const dir = tempDir('memballoon-ctl-');
  writeFileSync(join(dir, 'admin.token'), 'from-file\n', { mode: 0o600 });

  it('comes from --admin-token, then MEMBALLOON_ADMIN_TOKEN, then the data dir file', () => {
    expect(loadCtlConfig(['--admin-token', 'flag', '--data-dir', dir, 'list', 'vms'], { MEMBALLOON_ADMIN_TOKEN: 'env' }).adminToken).toBe('flag');
    expect(loadCtlConfig(['--data-dir', dir, 'list'], { MEMBALLOON_ADMIN_TOKEN: 'env' }).adminToken).toBe('env');
    expect(loadCtlConfig(['--data-dir', dir, 'list'], {}).adminToken).toBe('from-file');
    expect(loadCtlConfig(['list'], { MEMBALLOON_DATA_DIR: dir }).adminToken).toBe('from-file');
    expect(loadCtlConfig(['--data-dir=' + dir, 'list'], {}).args).toEqual(['list']);
  });

  it('is the default data dir’s file, or nothing', () => {
    const xdg = tempDir('memballoon-xdg-');
    const env = { XDG_DATA_HOME: xdg, MEMBALLOON_RUNTIME_DIR: join(xdg, 'run') };
    expect(loadCtlConfig(['list'], env).adminToken).toBeUndefined();
    expect(loadCtlConfig(['list'], env).tokenLookup.triedFiles).toEqual([join(xdg, 'memballoon', 'admin.token')]);
    mkdirSync(join(xdg, 'memballoon'));
    writeFileSync(join(xdg, 'memballoon', 'admin.token'), 'default-dir\n', { mode: 0o600 });
    expect(loadCtlConfig(['list'], env).adminToken).toBe('default-dir');
  });

  it("is the data dir's of the host recorded at the URL before the default one; an explicit data dir wins", () => {
    const root = tempDir('memballoon-rec-');
    const env = { XDG_DATA_HOME: join(root, 'xdg'), MEMBALLOON_RUNTIME_DIR: join(root, 'run') };
    mkdirSync(join(root, 'demo'));
    writeFileSync(join(root, 'demo', 'admin.token'), 'recorded\n', { mode: 0o600 });
    writeHostRecord(env.MEMBALLOON_RUNTIME_DIR, { url: 'http://127.0.0.1:7450', dataDir: join(root, 'demo'), pid: process.pid });
    const found = loadCtlConfig(['list'], env);
    expect(found.tokenLookup).toEqual({ token: 'recorded', source: join(root, 'demo', 'admin.token'), triedFiles: [join(root, 'demo', 'admin.token')] });
    expect(loadCtlConfig(['--host', 'http://127.0.0.1:7451', 'list'], env).adminToken).toBeUndefined();
    expect(loadCtlConfig(['--data-dir', dir, 'list'], env).adminToken).toBe('from-file');
  });

  it('takes --json, --help and --version anywhere; a flag without its value is refused', () => {
    const c = loadCtlConfig(['showvminfo', '--help', 'a', '--json', '--data-dir', dir], {});
    expect(c).toMatchObject({ help: true, json: true, version: false, args: ['showvminfo', 'a'] });
    expect(loadCtlConfig(['--version'], { MEMBALLOON_RUNTIME_DIR: dir }).version).toBe(true);
    expect(() => loadCtlConfig(['--host'], {})).toThrow(HostError);
    expect(() => loadCtlConfig(['--data-dir', '--json'], {})).toThrow(/--data-dir needs a value/);
    expect(() => loadCtlConfig(['--host', 'ftp://x'], {})).toThrow(/must start with http/);
  });

  it('needs a value after --admin-token', () => {
    expect(() => loadCtlConfig(['--admin-token'], {})).toThrow(/needs a value/);
  });
});
