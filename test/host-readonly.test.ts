// The read-only credential (issue 17.13): <data-dir>/readonly.token, made
// beside admin.token with the same rules, reads /metrics, the API's GETs and
// the dashboard's stream; every change (and any route that is not a read,
// such as startvm) is refused `forbidden` and counted.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHost, type HostHandle } from '@memballoon/host';
import { cleanUp } from './support/cleanup.js';

let dir: string;
let host: HostHandle;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'memballoon-ro-'));
  host = await startHost({ listenPort: 0, dataDir: dir, poolSizeMib: 1024, policyIntervalMs: 0, fusion: false });
  host.service.createVm({ name: 'ro-vm', memoryMib: 256 });
});
afterAll(async () => {
  await cleanUp(
    () => host?.close(),
    () => dir && rmSync(dir, { recursive: true, force: true }),
  );
});

const call = (token: string | undefined, method: string, path: string, body?: unknown) =>
  fetch(`${host.url}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

it('is a file beside admin.token with the same rules, and a different token', () => {
  const file = join(dir, 'readonly.token');
  expect(statSync(file).mode & 0o777).toBe(0o600);
  const token = readFileSync(file, 'utf8').trim();
  expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(token).toBe(host.readonlyToken);
  expect(token).not.toBe(host.adminToken);
});

it('reads /metrics, the API and the event stream, and says it is read-only', async () => {
  const ro = host.readonlyToken!;
  const metrics = await call(ro, 'GET', '/metrics');
  expect(metrics.status).toBe(200);
  expect(await metrics.text()).toMatch(/^memballoon_build_info\{/m);
  for (const path of ['/api/v1/host', '/api/v1/vms', '/api/v1/vms/ro-vm', '/api/v1/metrics?vm=host']) {
    const res = await call(ro, 'GET', path);
    expect(res.status, path).toBe(200);
    expect(res.headers.get('x-memballoon-access'), path).toBe('read-only');
    await res.arrayBuffer();
  }
  const abort = new AbortController();
  const events = await fetch(`${host.url}/api/v1/events`, { headers: { authorization: `Bearer ${ro}` }, signal: abort.signal });
  expect(events.status).toBe(200);
  expect(events.headers.get('x-memballoon-access')).toBe('read-only');
  abort.abort();
  const admin = await call(host.adminToken, 'GET', '/api/v1/host');
  expect(admin.headers.get('x-memballoon-access')).toBe('admin');
});

it('changes nothing: every other method, on any path, is forbidden and counted', async () => {
  const ro = host.readonlyToken!;
  const attempts: Array<[string, string, unknown]> = [
    ['POST', '/api/v1/vms', { name: 'sneaky', memoryMib: 64 }],
    ['PATCH', '/api/v1/vms/ro-vm', { memoryMib: 128 }],
    ['DELETE', '/api/v1/vms/ro-vm', undefined],
    ['PUT', '/api/v1/vms/ro-vm/balloon', { targetMib: 10 }],
    // startvm (issue 13) runs a command: a route the read-only token never reaches, whatever its path.
    ['POST', '/api/v1/vms/ro-vm/start', { command: ['true'] }],
    ['POST', '/api/v1/vms/ro-vm/poweroff', undefined],
  ];
  for (const [method, path, body] of attempts) {
    const res = await call(ro, method, path, body);
    expect(res.status, `${method} ${path}`).toBe(403);
    expect(await res.json(), `${method} ${path}`).toEqual({
      error: { code: 'forbidden', message: `the read-only token may not ${method} ${path}: changes need the admin token` },
    });
  }
  expect(host.service.listVms(false).map((v) => [v.name, v.memoryMib])).toEqual([['ro-vm', 256]]);
  const text = await (await call(ro, 'GET', '/metrics')).text();
  expect(text).toMatch(new RegExp(`^memballoon_refusals_total\\{reason="forbidden"\\} ${attempts.length}$`, 'm'));
  // A wrong token is still unauthorized, and the admin token still changes things.
  expect((await call('nope', 'GET', '/metrics')).status).toBe(401);
  expect((await call(host.adminToken, 'PATCH', '/api/v1/vms/ro-vm', { memoryMib: 128 })).status).toBe(200);
});
