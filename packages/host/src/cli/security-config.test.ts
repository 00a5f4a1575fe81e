// The security flags of balloon-host and where balloonctl finds the admin token.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadHostConfig } from '../config.js';
import { loadCtlConfig } from './ctl-config.js';

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
  const dir = mkdtempSync(join(tmpdir(), 'memballoon-ctl-'));
  writeFileSync(join(dir, 'admin.token'), 'from-file\n', { mode: 0o600 });

  it('comes from --admin-token, then MEMBALLOON_ADMIN_TOKEN, then the data dir file', () => {
    expect(loadCtlConfig(['--admin-token', 'flag', '--data-dir', dir, 'list', 'vms'], { MEMBALLOON_ADMIN_TOKEN: 'env' }).adminToken).toBe('flag');
    expect(loadCtlConfig(['--data-dir', dir, 'list'], { MEMBALLOON_ADMIN_TOKEN: 'env' }).adminToken).toBe('env');
    expect(loadCtlConfig(['--data-dir', dir, 'list'], {}).adminToken).toBe('from-file');
    expect(loadCtlConfig(['list'], { MEMBALLOON_DATA_DIR: dir }).adminToken).toBe('from-file');
    expect(loadCtlConfig(['--data-dir=' + dir, 'list'], {}).args).toEqual(['list']);
  });

  it('is the default data dir’s file, or nothing', () => {
    const xdg = mkdtempSync(join(tmpdir(), 'memballoon-xdg-'));
    expect(loadCtlConfig(['list'], { XDG_DATA_HOME: xdg }).adminToken).toBeUndefined();
    mkdirSync(join(xdg, 'memballoon'));
    writeFileSync(join(xdg, 'memballoon', 'admin.token'), 'default-dir\n', { mode: 0o600 });
    expect(loadCtlConfig(['list'], { XDG_DATA_HOME: xdg }).adminToken).toBe('default-dir');
    rmSync(xdg, { recursive: true, force: true });
  });

  it('needs a value after --admin-token', () => {
    expect(() => loadCtlConfig(['--admin-token'], {})).toThrow(/needs a value/);
  });
});
