import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { listenProblem } from './listen.js';
import {
  bearerOf,
  ensureAdminToken,
  ensureReadonlyToken,
  generateToken,
  hashToken,
  isLoopback,
  readAdminToken,
  tokenMatches,
  TokenVerifier,
} from './tokens.js';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'memballoon-auth-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('tokens', () => {
  it('are 256 bits, url-safe and different each time', () => {
    const a = generateToken();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a, 'base64url')).toHaveLength(32);
    expect(new Set(Array.from({ length: 100 }, generateToken)).size).toBe(100);
  });

  it('match only their own hash', () => {
    const t = generateToken();
    const h = hashToken(t);
    expect(h).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(h).not.toContain(t);
    expect(tokenMatches(t, h)).toBe(true);
    for (const wrong of ['', t.slice(1), `${t} `, t.toUpperCase(), generateToken()]) expect(tokenMatches(wrong, h)).toBe(false);
    expect(tokenMatches(t, 'plain-text')).toBe(false);
    expect(tokenMatches(t, 'sha256:abc')).toBe(false);
  });

  it('are verified against their hash with the last match remembered, and a wrong one never passes after a right one', () => {
    const t = generateToken();
    const v = new TokenVerifier(hashToken(t));
    expect(v.matches(generateToken())).toBe(false);
    expect(v.matches(t)).toBe(true);
    expect(v.matches(t)).toBe(true);
    // Same length, one character changed; shorter; longer; empty.
    const flipped = `${t.slice(0, -1)}${t.endsWith('A') ? 'B' : 'A'}`;
    for (const wrong of [flipped, t.slice(1), `${t}x`, '']) expect(v.matches(wrong)).toBe(false);
    expect(v.matches(t)).toBe(true);
    expect(new TokenVerifier('plain-text').matches(t)).toBe(false);
  });

  it('read a Bearer header and nothing else', () => {
    expect(bearerOf('Bearer abc')).toBe('abc');
    expect(bearerOf('bearer   abc ')).toBe('abc');
    for (const bad of [undefined, '', 'Bearer', 'Bearer ', 'Basic abc', 'Bearer a b', 'abc']) expect(bearerOf(bad)).toBeUndefined();
  });
});

describe('the admin token file', () => {
  it('is made once with mode 0600 and read back', () => {
    const dir = join(tempDir(), 'data');
    const first = ensureAdminToken(dir);
    expect(first.created).toBe(true);
    expect(statSync(first.path).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const again = ensureAdminToken(dir);
    expect(again).toMatchObject({ token: first.token, created: false });
    expect(readAdminToken(dir)).toBe(first.token);
    expect(readAdminToken(join(dir, 'nope'))).toBeUndefined();
  });

  it('is refused when others may read it, or when it is empty', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'admin.token'), `${generateToken()}\n`, { mode: 0o640 });
    expect(() => ensureAdminToken(dir)).toThrow(/may be read or written by others \(mode 640\).*chmod 600/);
    const dir2 = tempDir();
    writeFileSync(join(dir2, 'admin.token'), '\n', { mode: 0o600 });
    expect(() => ensureAdminToken(dir2)).toThrow(/no usable token/);
  });

  it('says what each token file gives its reader: the read-only token changes no balloon', () => {
    const dir = tempDir();
    ensureAdminToken(dir);
    writeFileSync(join(dir, 'readonly.token'), `${generateToken()}\n`, { mode: 0o644 });
    chmodSync(join(dir, 'readonly.token'), 0o644);
    expect(() => ensureReadonlyToken(dir)).toThrow(
      /readonly\.token may be read or written by others \(mode 644\): whoever reads it sees every VM.*read-only: no balloon changes.*chmod 600/,
    );
    expect(() => ensureReadonlyToken(dir)).not.toThrow(/controls every balloon/);
    expect(() => readAdminToken(dir, 'readonly.token')).toThrow(/read-only: no balloon changes/);
    chmodSync(join(dir, 'admin.token'), 0o644);
    expect(() => ensureAdminToken(dir)).toThrow(/admin\.token may be read or written by others \(mode 644\): whoever reads it controls every balloon/);
  });
});

describe('the data directory and the token file are private', () => {
  const asRoot = typeof process.geteuid === 'function' && process.geteuid() === 0;

  it('refuses a token file that is a symbolic link, naming the fix, and never writes through it', () => {
    const dir = tempDir();
    const target = join(tempDir(), 'chosen-by-someone-else');
    writeFileSync(target, 'attacker-chosen-token-0123456789\n', { mode: 0o600 });
    symlinkSync(target, join(dir, 'admin.token'));
    expect(() => ensureAdminToken(dir)).toThrow(/admin\.token is a symbolic link.*remove it/);
    expect(() => readAdminToken(dir)).toThrow(/symbolic link/);
    // A dangling link is not followed to create a file either.
    const dir2 = tempDir();
    const nowhere = join(tempDir(), 'nowhere');
    symlinkSync(nowhere, join(dir2, 'admin.token'));
    expect(() => ensureAdminToken(dir2)).toThrow(/symbolic link/);
    expect(existsSync(nowhere)).toBe(false);
  });

  it('refuses a data directory others may write, and says chmod 700', () => {
    const dir = tempDir();
    for (const mode of [0o777, 0o770, 0o1777, 0o702]) {
      chmodSync(dir, mode);
      expect(() => ensureAdminToken(dir), mode.toString(8)).toThrow(/may be written by others .*chmod 700/);
      expect(existsSync(join(dir, 'admin.token'))).toBe(false);
    }
    chmodSync(dir, 0o755);
    expect(ensureAdminToken(dir).created).toBe(true);
  });

  it('refuses a directory or a token file that another user owns (root only: chown)', (ctx) => {
    if (!asRoot) return ctx.skip();
    const dir = tempDir();
    chownSync(dir, 65534, 65534);
    expect(() => ensureAdminToken(dir)).toThrow(/belongs to user 65534.*chown 0/);
    chownSync(dir, 0, 0);
    writeFileSync(join(dir, 'admin.token'), `${generateToken()}\n`, { mode: 0o600 });
    chownSync(join(dir, 'admin.token'), 65534, 65534);
    expect(() => ensureAdminToken(dir)).toThrow(/admin\.token belongs to user 65534/);
    // balloonctl may read a service user's token (root reading it is fine); only the mode counts there.
    expect(readAdminToken(dir)).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('refuses a token path that is not a regular file', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'admin.token'), { mode: 0o700 });
    expect(() => ensureAdminToken(dir)).toThrow(/not a regular file/);
  });
});

describe('listen rules', () => {
  it('know loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', 'example.com', '128.0.0.1', '::ffff:10.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });

  it('allow loopback always; elsewhere need TLS or the explicit flag, and never no-auth', () => {
    expect(listenProblem('127.0.0.1', { tls: false, noAuth: true, allowInsecure: false })).toEqual({});
    expect(listenProblem('0.0.0.0', { tls: true, noAuth: false, allowInsecure: false })).toEqual({});
    expect(listenProblem('0.0.0.0', { tls: false, noAuth: false, allowInsecure: false }).error).toMatch(/--tls-cert/);
    expect(listenProblem('0.0.0.0', { tls: false, noAuth: false, allowInsecure: true })).toEqual({ warning: expect.stringMatching(/clear text/) });
    expect(listenProblem('0.0.0.0', { tls: true, noAuth: true, allowInsecure: true }).error).toMatch(/loopback addresses only/);
  });
});
