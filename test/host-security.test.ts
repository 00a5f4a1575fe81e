// Issue 8, security: guest tokens (auth_failed, 4007, counted), the admin
// token (401 without it, a 0600 file), what the registry stores, the listen
// rules, auto-registration's trust on first use, the Hello size limit and the
// cap on connections that have not said Hello. In-process host, fake guests.
import Database from 'better-sqlite3';
import { chmodSync, existsSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bodies } from '@memballoon/protocol';
import { startHost, type HostHandle } from '@memballoon/host';
import { connectFake, helloFor, registerVm } from './support/fake-guest.js';
import { tempDataDir } from './support/host.js';
import { captureLogger } from './support/capture-log.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const hosts: HostHandle[] = [];
const dirs: Array<{ remove: () => void }> = [];

async function start(opts: Partial<Parameters<typeof startHost>[0]> = {}): Promise<{ host: HostHandle; dir: string }> {
  const data = tempDataDir();
  dirs.push(data);
  const host = await startHost({ listenPort: 0, dataDir: data.dir, poolSizeMib: 1024, policyIntervalMs: 0, dashboard: false, fusion: { ksm: null }, ...opts });
  hosts.push(host);
  return { host, dir: data.dir };
}

afterEach(async () => {
  await cleanUp(
    () => Promise.all(hosts.splice(0).map((h) => h.close())),
    () => {
      for (const d of dirs.splice(0)) d.remove();
    },
  );
});

const get = (host: HostHandle, path: string, token?: string) =>
  fetch(`${host.url}${path}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });

async function metric(host: HostHandle, pattern: RegExp): Promise<number> {
  const text = await (await get(host, '/metrics', host.adminToken)).text();
  const m = pattern.exec(text);
  return m ? Number(m[1]) : 0;
}

describe('guest tokens', () => {
  it('welcomes the right token; refuses a wrong or missing one with auth_failed (4007) and counts it', async () => {
    const { host } = await start();
    const { token } = registerVm(host, { name: 'a', memoryMib: 256 });
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    for (const credential of ['', 'wrong', `${token}x`, token.slice(0, -1)]) {
      const g = await connectFake(host.url);
      g.send(helloFor('a', 256, { credential }));
      const err = await g.next('error');
      expect(err.code).toBe('auth_failed');
      expect(err.message).toMatch(/token/);
      expect((await g.waitClosed()).code).toBe(4007);
      expect(host.service.isRunning('a')).toBe(false);
    }
    expect(await metric(host, /memballoon_refusals_total\{reason="auth_failed"\} (\d+)/)).toBe(4);
    const g = await connectFake(host.url);
    g.send(helloFor('a', 256));
    await g.next('welcome');
    expect(host.service.isRunning('a')).toBe(true);
    // A second guest with the right token is refused: one live session per VM.
    const g2 = await connectFake(host.url);
    g2.send(helloFor('a', 256));
    expect((await g2.next('error')).code).toBe('already_connected');
    expect((await g2.waitClosed()).code).toBe(4008);
    g.close();
  });

  it('stores only a hash of the token, and createvm over the API shows it once', async () => {
    const { host, dir } = await start();
    const res = await fetch(`${host.url}/api/v1/vms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${host.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'b', memoryMib: 128 }),
    });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { token: string };
    expect(created.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const shown = (await (await get(host, '/api/v1/vms/b', host.adminToken)).json()) as Record<string, unknown>;
    expect(JSON.stringify(shown)).not.toContain(created.token);
    expect(JSON.stringify(shown)).not.toMatch(/sha256/);
    await host.close();
    const db = new Database(join(dir, 'registry.sqlite'), { readonly: true });
    const row = db.prepare('SELECT * FROM vms WHERE name = ?').get('b') as Record<string, unknown>;
    db.close();
    expect(JSON.stringify(row)).not.toContain(created.token);
    expect(row.token_hash).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('auto-registration trusts the first Hello: its token binds the VM, no token leaves it open', async () => {
    const { host } = await start({ autoRegister: true });
    const g1 = await connectFake(host.url);
    g1.send(helloFor('tofu', 256, { credential: 'first-secret-0123456789' }));
    await g1.next('welcome');
    g1.close();
    await waitFor(() => !host.service.isRunning('tofu'));
    const bad = await connectFake(host.url);
    bad.send(helloFor('tofu', 256, { credential: 'another' }));
    expect((await bad.next('error')).code).toBe('auth_failed');
    const good = await connectFake(host.url);
    good.send(helloFor('tofu', 256, { credential: 'first-secret-0123456789' }));
    await good.next('welcome');
    good.close();
    const open = await connectFake(host.url);
    open.send(helloFor('open-vm', 128, { credential: '' }));
    await open.next('welcome');
    open.close();
  });

  it('turns every token off with insecureNoAuth (loopback only)', async () => {
    const { host } = await start({ insecureNoAuth: true });
    expect(host.adminToken).toBeUndefined();
    expect((await get(host, '/api/v1/host')).status).toBe(200);
    registerVm(host, { name: 'c', memoryMib: 128 });
    const g = await connectFake(host.url);
    g.send(helloFor('c', 128, { credential: '' }));
    await g.next('welcome');
    g.close();
  });
});

describe('admin token', () => {
  it('is created at the first start with mode 0600 and kept across restarts', async () => {
    const data = tempDataDir();
    dirs.push(data);
    const h1 = await startHost({ listenPort: 0, dataDir: data.dir, poolSizeMib: 64, policyIntervalMs: 0, dashboard: false, fusion: false });
    const file = join(data.dir, 'admin.token');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toBe(h1.adminToken);
    await h1.close();
    const h2 = await startHost({ listenPort: 0, dataDir: data.dir, poolSizeMib: 64, policyIntervalMs: 0, dashboard: false, fusion: false });
    hosts.push(h2);
    expect(h2.adminToken).toBe(h1.adminToken);
  });

  it('is required on the admin API and /metrics (401 with the JSON error); the dashboard shell stays open', async () => {
    const { host } = await start({ dashboard: true });
    for (const path of ['/api/v1/host', '/api/v1/vms', '/metrics', '/api/v1/events']) {
      for (const token of [undefined, 'wrong', `${host.adminToken}x`]) {
        const res = await get(host, path, token);
        expect(res.status, `${path} with ${token}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
      }
    }
    const write = await fetch(`${host.url}/api/v1/vms`, { method: 'POST', body: JSON.stringify({ name: 'x', memoryMib: 64 }) });
    expect(write.status).toBe(401);
    expect(host.service.listVms(false)).toEqual([]);
    expect((await get(host, '/api/v1/host', host.adminToken)).status).toBe(200);
    expect((await get(host, '/metrics', host.adminToken)).status).toBe(200);
    const shell = await get(host, '/');
    expect(shell.status).toBe(200);
    await shell.text();
  });

  it('refuses a group- or world-readable token file', async () => {
    const data = tempDataDir();
    dirs.push(data);
    const h = await startHost({ listenPort: 0, dataDir: data.dir, poolSizeMib: 64, policyIntervalMs: 0, dashboard: false, fusion: false });
    await h.close();
    const { chmodSync } = await import('node:fs');
    chmodSync(join(data.dir, 'admin.token'), 0o644);
    await expect(startHost({ listenPort: 0, dataDir: data.dir, poolSizeMib: 64, policyIntervalMs: 0, dashboard: false, fusion: false })).rejects.toThrow(
      /may be read or written by others \(mode 644\).*chmod 600/,
    );
  });
});

describe('VM names', () => {
  it('refuses names a URL path would change (. and ..), and every accepted name can be shown and removed by its URL', async () => {
    const { host } = await start();
    const post = (name: string) =>
      fetch(`${host.url}/api/v1/vms`, {
        method: 'POST',
        headers: { authorization: `Bearer ${host.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name, memoryMib: 64 }),
      });
    for (const name of ['.', '..', '...', 'a/b', '%2e%2e', 'a?b', 'a#b', 'a\\b']) {
      const res = await post(name);
      expect(res.status, name).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_argument');
    }
    expect(host.service.listVms(false)).toEqual([]);
    for (const name of ['.hidden', 'a..b', 'web 1', 'Grüße']) {
      expect((await post(name)).status, name).toBe(201);
      const path = `/api/v1/vms/${encodeURIComponent(name)}`;
      expect(((await (await get(host, path, host.adminToken)).json()) as { name: string }).name).toBe(name);
      expect((await fetch(`${host.url}${path}`, { method: 'DELETE', headers: { authorization: `Bearer ${host.adminToken}` } })).status).toBe(204);
    }
    expect(host.service.listVms(false)).toEqual([]);
  });
});

describe('the data directory', () => {
  const opts = (dir: string) => ({ listenPort: 0, dataDir: dir, poolSizeMib: 64, policyIntervalMs: 0, dashboard: false, fusion: false as const });

  it('keeps the registry, its WAL and shared memory at mode 0600 beside a 0600 token', async () => {
    const { host, dir } = await start();
    registerVm(host, { name: 'a', memoryMib: 64 });
    for (const f of ['registry.sqlite', 'registry.sqlite-wal', 'registry.sqlite-shm', 'admin.token'])
      expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
  });

  it('stops the host when others may write the data directory, or the token is a link, and says what to fix', async () => {
    const data = tempDataDir();
    dirs.push(data);
    chmodSync(data.dir, 0o777);
    await expect(startHost(opts(data.dir))).rejects.toThrow(/may be written by others \(mode 777\).*chmod 700/);
    chmodSync(data.dir, 0o700);
    const h = await startHost(opts(data.dir));
    await h.close();
    const elsewhere = tempDataDir();
    dirs.push(elsewhere);
    writeFileSync(join(elsewhere.dir, 'mine'), 'a-token-someone-else-chose-0123\n', { mode: 0o600 });
    rmSync(join(data.dir, 'admin.token'));
    symlinkSync(join(elsewhere.dir, 'mine'), join(data.dir, 'admin.token'));
    await expect(startHost(opts(data.dir))).rejects.toThrow(/admin\.token is a symbolic link/);
  });

  it("stops the host on a zero-byte or missing registry beside the host's other files, instead of starting empty", async () => {
    const { host, dir } = await start();
    registerVm(host, { name: 'precious', memoryMib: 64 });
    await host.close();
    truncateSync(join(dir, 'registry.sqlite'), 0);
    await expect(startHost({ ...opts(dir), autoRegister: true })).rejects.toThrow(/registry\.sqlite is empty \(0 bytes\)/);
    rmSync(join(dir, 'registry.sqlite'));
    await expect(startHost({ ...opts(dir), autoRegister: true })).rejects.toThrow(/registry\.sqlite is missing but admin\.token is still in/);
    expect(existsSync(join(dir, 'registry.sqlite'))).toBe(false);
  });
});

describe('the admin API under bad requests', () => {
  const call = (host: HostHandle, method: string, path: string, body?: string) =>
    fetch(`${host.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${host.adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body }),
    });

  it('answers a deeply nested JSON body with 400, on every route that reads one, and logs no 500', async () => {
    const { logger, text } = captureLogger('error');
    const { host } = await start({ logger });
    registerVm(host, { name: 'a', memoryMib: 128 });
    const depth = 20_000; // 40 KB, under the body size limit
    const nested = (key: string) => `{"${key}":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    for (const [method, path, key] of [
      ['POST', '/api/v1/vms', 'name'],
      ['PATCH', '/api/v1/vms/a', 'memoryMib'],
      ['PUT', '/api/v1/vms/a/balloon', 'targetMib'],
    ] as const) {
      const res = await call(host, method, path, nested(key));
      expect(res.status, `${method} ${path}`).toBe(400);
      const err = ((await res.json()) as { error: { code: string; message: string } }).error;
      expect(err.code).toBe('invalid_argument');
      expect(err.message).toMatch(/nested deeper than \d+ levels/);
    }
    expect(text()).toBe('');
    expect(host.service.vmView('a').memoryMib).toBe(128);
  });

  it('logs every 500 with its stack', async () => {
    const { logger, text } = captureLogger('error');
    const { host } = await start({ logger });
    host.service.hostView = () => {
      throw new TypeError('a bug in the host');
    };
    const res = await call(host, 'GET', '/api/v1/host');
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('internal');
    const line = JSON.parse(text().trim().split('\n').at(-1)!) as { msg: string; path: string; err: { type: string; stack: string } };
    expect(line.msg).toMatch(/admin request failed: a bug in the host/);
    expect(line.path).toBe('/api/v1/host');
    expect(line.err.type).toBe('TypeError');
    expect(line.err.stack).toMatch(/TypeError: a bug in the host\n\s+at /);
  });

  it('answers a wrong method with 405 and an Allow header naming the right ones', async () => {
    const { host } = await start();
    registerVm(host, { name: 'a', memoryMib: 128 });
    for (const [method, path, allow] of [
      ['POST', '/api/v1/host', 'GET'],
      ['DELETE', '/api/v1/metrics', 'GET'],
      ['PUT', '/metrics', 'GET'],
      ['PUT', '/api/v1/vms', 'GET, POST'],
      ['POST', '/api/v1/vms/a', 'GET, DELETE, PATCH'],
      ['GET', '/api/v1/vms/a/balloon', 'PUT'],
      ['PATCH', '/api/v1/vms/a/balloon', 'PUT'],
      ['GET', '/api/v1/vms/a/startvm', 'POST'],
    ] as const) {
      const res = await call(host, method, path, method === 'GET' ? undefined : '{}');
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow'), `${method} ${path}`).toBe(allow);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
    }
    expect(host.service.vmView('a').memoryMib).toBe(128);
  });
});

describe('listen rules', () => {
  it('refuses no-auth and plaintext on a non-loopback address; allows plaintext with the flag and a warning', async () => {
    await expect(start({ listenHost: '0.0.0.0', insecureNoAuth: true, allowInsecureListen: true })).rejects.toThrow(/loopback addresses only/);
    await expect(start({ listenHost: '0.0.0.0' })).rejects.toThrow(/needs --tls-cert and --tls-key, or --allow-insecure-listen/);
    const { logger, text } = captureLogger('warn');
    const { host } = await start({ listenHost: '0.0.0.0', allowInsecureListen: true, logger });
    expect(host.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    expect(text()).toMatch(/without TLS: guest and admin tokens cross the network in clear text/);
  });
});

describe('a guest that lies about its balloon', () => {
  it('may sit above a smaller target while it deflates, never above what it held and was asked; the excess is clamped and counted', async () => {
    const { host } = await start();
    registerVm(host, { name: 'liar', memoryMib: 512 });
    const g = await connectFake(host.url);
    g.send(helloFor('liar', 512));
    await g.next('welcome');
    await host.service.setBalloon('liar', 100);
    const t1 = await g.next('setBalloonTarget');
    g.send(bodies.balloonStatus({ generation: t1.generation, targetMib: 100, actualMib: 100, lockedMib: 100, state: 'steady' }));
    await waitFor(() => host.service.vmView('liar').balloon?.actualMib === 100);
    await host.service.setBalloon('liar', 50);
    const t2 = await g.next('setBalloonTarget');
    // Deflating from 100 towards 50: 80 is honest.
    g.send(bodies.balloonStatus({ generation: t2.generation, targetMib: 50, actualMib: 80, lockedMib: 80, state: 'deflating' }));
    await waitFor(() => host.service.vmView('liar').balloon?.actualMib === 80);
    const before = await metric(host, /memballoon_protocol_errors_total\{code="out_of_range"\} (\d+)/);
    // 300 is above both the target (50) and what it held (80): clamped to 80.
    g.send(bodies.balloonStatus({ generation: t2.generation, targetMib: 50, actualMib: 300, lockedMib: 300, state: 'steady' }));
    await waitFor(async () => (await metric(host, /memballoon_protocol_errors_total\{code="out_of_range"\} (\d+)/)) === before + 1, {
      what: 'the lie to be counted',
    });
    expect(host.service.vmView('liar').balloon).toMatchObject({ actualMib: 80, lockedMib: 80 });
    // The pool counts min(target, actual): 512 - 50.
    expect(host.service.hostView().pool.heldMib).toBe(462);
    g.close();
  });
});

describe('counting and logging under a flood', () => {
  it('counts admin requests refused for the token', async () => {
    const { host } = await start();
    for (let i = 0; i < 3; i++) expect((await get(host, '/api/v1/host', 'wrong')).status).toBe(401);
    expect(await metric(host, /memballoon_refusals_total\{reason="unauthorized"\} (\d+)/)).toBe(3);
  });

  it('counts every protocol error but logs only within a host-wide budget', async () => {
    const { logger, text } = captureLogger('warn');
    const { host } = await start({ logger, limits: { maxGuestLogLinesPerSecond: 1, guestLogBurstLines: 1 } });
    const startedMs = Date.now();
    // All at once: the flood's length in time stays that of one connection, so
    // "fewer lines than errors" (1 line a second) holds however slow the machine.
    await Promise.all(
      Array.from({ length: 30 }, async () => {
        const g = await connectFake(host.url);
        g.sendRaw(new Uint8Array([0xff, 0xff, 0xff]));
        await g.waitClosed();
      }),
    );
    expect(await metric(host, /memballoon_protocol_errors_total\{code="malformed_frame"\} (\d+)/)).toBe(30);
    const lines = text()
      .split('\n')
      .filter((l) => l.includes('protocol error')).length;
    expect(lines).toBeGreaterThanOrEqual(1);
    // The budget allows its burst plus its rate for the time the work took, whatever the machine's load.
    expect(lines).toBeLessThanOrEqual(1 + Math.ceil((Date.now() - startedMs) / 1000));
    expect(lines).toBeLessThan(30);
  });

  it('puts every line a connected guest can cause under the same budget (Error frames, statuses for generations never sent)', async () => {
    const { logger, lines } = captureLogger('info');
    const burstLines = 5;
    const { host } = await start({ logger, limits: { maxGuestLogLinesPerSecond: 1, guestLogBurstLines: burstLines } });
    registerVm(host, { name: 'noisy', memoryMib: 256 });
    const startedMs = Date.now();
    const g = await connectFake(host.url);
    g.send(helloFor('noisy', 256));
    await g.next('welcome');
    const frames = 150; // under the session's rate cap, so the session stays open
    for (let i = 0; i < frames / 2; i++) {
      g.send(bodies.error('internal', `guest error ${i}`));
      g.send(bodies.balloonStatus({ generation: 1000 + i, targetMib: 1, actualMib: 1, lockedMib: 0, state: 'steady' }));
    }
    // Work, not time: wait until the host has handled every status.
    await waitFor(async () => (await metric(host, /memballoon_protocol_errors_total\{code="invalid_argument"\} (\d+)/)) === frames / 2, {
      what: 'every status to be handled',
    });
    expect(g.closed).toBeUndefined();
    const guestLines = lines().filter((l) => l.remote !== undefined).length;
    const reports = lines().filter((l) => typeof l.suppressedLines === 'number');
    const allowed = burstLines + Math.ceil((Date.now() - startedMs) / 1000);
    expect(guestLines).toBeLessThanOrEqual(allowed);
    // At most one "N dropped" line per line let through, and nothing vanishes silently.
    expect(reports.length).toBeLessThanOrEqual(allowed);
    g.close();
  });
});

describe('limits before Hello', () => {
  it('refuses a first frame above the Hello size limit with frame_too_large (4012)', async () => {
    const { host } = await start();
    registerVm(host, { name: 'big', memoryMib: 128 });
    const g = await connectFake(host.url);
    g.sendRaw(new Uint8Array(20 * 1024));
    expect((await g.waitClosed()).code).toBe(4012);
  });

  it('lets a guest with a valid token in while strangers flood the endpoint with connections that never say Hello', async () => {
    const cap = 8;
    const { host } = await start({ limits: { maxPendingConnections: cap, helloTimeoutMs: 60_000 } });
    registerVm(host, { name: 'real', memoryMib: 128 });
    const strangers: Array<Awaited<ReturnType<typeof connectFake>>> = [];
    for (let i = 0; i < 3 * cap; i++) strangers.push(await connectFake(host.url));
    // The flood goes on while the guest connects: one more stranger at a
    // time until the guest is in (a bounded count, not a time).
    let welcomed = false;
    const flood = (async () => {
      for (let i = 0; i < 500 && !welcomed; i++) strangers.push(await connectFake(host.url));
    })();
    const guest = await connectFake(host.url);
    guest.send(helloFor('real', 128));
    await guest.next('welcome');
    welcomed = true;
    await flood;
    expect(host.service.isRunning('real')).toBe(true);
    // Never more strangers than the cap hold a socket; the others were told why.
    await waitFor(() => strangers.filter((s) => s.closed === undefined).length <= cap, { what: 'the strangers beyond the cap to be closed' });
    const closedCodes = new Set(strangers.filter((s) => s.closed).map((s) => s.closed!.code));
    expect([...closedCodes]).toEqual([4010]);
    // One eviction per stranger beyond the cap (one more if a stranger made room for the guest while it was still pending).
    const evicted = await metric(host, /memballoon_protocol_errors_total\{code="rate_limited"\} (\d+)/);
    expect(evicted).toBeGreaterThanOrEqual(strangers.length - cap);
    expect(evicted).toBeLessThanOrEqual(strangers.length - cap + 1);
    for (const s of strangers) s.close();
    guest.close();
  });
});
