// The admin API over HTTP (in-process host): status codes, error bodies and
// the mounts (/metrics, dashboard).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHost, type ApiErrorView, type HostHandle } from '@memballoon/host';
import { tempDataDir } from './support/host.js';
import { cleanUp } from './support/cleanup.js';

let host: HostHandle;
let data: ReturnType<typeof tempDataDir>;

beforeAll(async () => {
  data = tempDataDir();
  host = await startHost({ listenPort: 0, dataDir: data.dir, poolSizeMib: 1000, policyIntervalMs: 0, fusion: { ksm: null } });
});
afterAll(async () => {
  await cleanUp(
    () => host?.close(),
    () => data?.remove(),
  );
});

async function call(method: string, path: string, body?: unknown, raw?: string) {
  // Hardening adds an admin token; send it when the host has one.
  const token = (host as { adminToken?: string }).adminToken;
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const res = await fetch(`${host.url}${path}`, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  return { status: res.status, json: text && type.includes('json') ? (JSON.parse(text) as unknown) : undefined, text, type };
}

describe('admin API', () => {
  it('creates, reads, patches and deletes VMs with names URL-encoded', async () => {
    expect(await call('POST', '/api/v1/vms', { name: 'web 1', memoryMib: 256 })).toMatchObject({
      status: 201,
      json: { name: 'web 1', state: 'poweroff', memoryMib: 256 },
    });
    expect(await call('GET', '/api/v1/vms/web%201')).toMatchObject({ status: 200, json: { name: 'web 1' } });
    expect(await call('PATCH', '/api/v1/vms/web%201', { defaultBalloonMib: 64 })).toMatchObject({ status: 200, json: { defaultBalloonMib: 64 } });
    expect((await call('GET', '/api/v1/vms')).json).toHaveLength(1);
    expect((await call('GET', '/api/v1/vms?running=1')).json).toEqual([]);
    expect(await call('DELETE', '/api/v1/vms/web%201')).toMatchObject({ status: 204 });
    expect((await call('GET', '/api/v1/host')).json).toMatchObject({
      pool: { sizeMib: 1000, heldMib: 0, reclaimedMib: 0, freeMib: 1000 },
      vmsRegistered: 0,
      vmsRunning: 0,
      listen: host.url,
    });
  });

  it('answers errors as ApiErrorView with the right status', async () => {
    const cases: Array<[string, string, unknown, number, string, string?]> = [
      ['GET', '/api/v1/vms/ghost', undefined, 404, 'not_found'],
      ['POST', '/api/v1/vms', { name: 'x', memoryMib: -1 }, 400, 'out_of_range'],
      ['POST', '/api/v1/vms', { memoryMib: 1 }, 400, 'invalid_argument'],
      ['PUT', '/api/v1/vms/ghost/balloon', { targetMib: 1 }, 404, 'not_found'],
      ['GET', '/api/v1/nothing', undefined, 404, 'not_found'],
      ['DELETE', '/api/v1/host', undefined, 405, 'method_not_allowed'],
      ['POST', '/api/v1/vms', undefined, 400, 'invalid_argument', '{nope'],
      ['POST', '/api/v1/vms', undefined, 400, 'invalid_argument', '[1]'],
    ];
    await call('POST', '/api/v1/vms', { name: 'dup', memoryMib: 10 });
    cases.push(['POST', '/api/v1/vms', { name: 'dup', memoryMib: 10 }, 409, 'already_exists']);
    cases.push(['PUT', '/api/v1/vms/dup/balloon', { targetMib: 1 }, 409, 'not_running']);
    for (const [method, path, body, status, code, raw] of cases) {
      const r = await call(method, path, body, raw);
      expect({ method, path, status: r.status, code: (r.json as ApiErrorView).error.code }).toEqual({ method, path, status, code });
      expect((r.json as ApiErrorView).error.message.length).toBeGreaterThan(5);
    }
    const huge = await call('POST', '/api/v1/vms', undefined, JSON.stringify({ name: 'x'.repeat(100_000) }));
    expect(huge.status).toBe(400);
  });

  it('mounts /metrics, the metrics query and the dashboard', async () => {
    const m = await call('GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/memballoon_/);
    const q = await call('GET', '/api/v1/metrics?vm=host');
    expect(q.status).toBe(200);
    expect(q.json).toEqual(expect.arrayContaining([expect.objectContaining({ object: 'host', metric: 'RAM/VMM/Free' })]));
    expect((await call('GET', '/api/v1/metrics?vm=ghost')).status).toBe(404);
    expect((await call('GET', '/api/v1/metrics?metric=Nope/Such')).status).toBe(400);
    const page = await call('GET', '/');
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/text\/html/);
  });
});
