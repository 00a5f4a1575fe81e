// PUT /api/v1/vms/NAME/balloon through the router on a real HTTP server
// (port 0) and a HostService with stand-in guest links: the answer is the
// VM's view, byte for byte JSON.stringify's, with the same headers and
// errors whether the target applies at once or waits for the quota lock.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { bodies, type BalloonStatus } from '@memballoon/protocol';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { hashToken } from '../auth/tokens.js';
import type { HostService } from '../service/host-service.js';
import { testHello, testLogger, testService } from '../service/test-fixtures.js';
import { ACCESS_HEADER, createRouter } from './router.js';

const ADMIN = 'admin-token';
const READONLY = 'readonly-token';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

function put(base: string, path: string, body: string, token = ADMIN): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function guestLink() {
  const l = {
    targets: [] as Array<[number, number]>,
    open: true,
    sendTarget(t: number, g: number) {
      l.targets.push([t, g]);
    },
    end() {
      l.open = false;
    },
  };
  return l;
}

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function serve(s: HostService): Promise<string> {
  server = createServer(createRouter(s, { adminTokenHash: hashToken(ADMIN), readonlyTokenHash: hashToken(READONLY), logger: testLogger }));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
}

async function twoGuests() {
  const s = testService({ poolSizeMib: 1024, guestAuth: false, reclaimTimeoutMs: 200 });
  s.createVm({ name: 'a', memoryMib: 512 });
  s.createVm({ name: 'b', memoryMib: 512 });
  const links = { a: guestLink(), b: guestLink() };
  const sessions: Record<string, string> = {};
  for (const name of ['a', 'b'] as const) {
    const r = await s.openSession(testHello(name, 512), links[name], testLogger);
    if (!r.ok) throw new Error(r.message);
    sessions[name] = r.sessionId;
  }
  return { s, links, sessions };
}

/** A 1,024 MiB pool for guests opened one by one, whose stand-in agents reach their targets when told. */
async function threeGuests() {
  const s = testService({ poolSizeMib: 1024, guestAuth: false, reclaimTimeoutMs: 30_000 });
  const links = { a: guestLink(), b: guestLink(), c: guestLink() };
  const sessions: Record<string, string> = {};
  type Name = keyof typeof links;
  const open = async (name: Name, memoryMib: number) => {
    s.createVm({ name, memoryMib });
    const r = await s.openSession(testHello(name, memoryMib), links[name], testLogger);
    if (!r.ok) throw new Error(r.message);
    sessions[name] = r.sessionId;
  };
  const reach = (name: Name) => {
    const [targetMib, generation] = links[name].targets.at(-1)!;
    s.onStatus(
      name,
      sessions[name]!,
      bodies.balloonStatus({ generation, targetMib, actualMib: targetMib, lockedMib: targetMib, state: 'steady' }).value as BalloonStatus,
    );
  };
  // A reclaim raises b's and c's targets once it holds the lock; they reach them.
  const othersReach = async () => {
    const raised = () => (['b', 'c'] as const).filter((name) => (links[name].targets.at(-1)?.[0] ?? 0) > 0);
    await vi.waitFor(() => expect(raised().length).toBeGreaterThan(0));
    for (const name of raised()) reach(name);
  };
  return { s, links, open, reach, othersReach };
}

describe('PUT /api/v1/vms/NAME/balloon', () => {
  it('applies a target that needs nothing at once, and answers with the view as JSON.stringify writes it', async () => {
    const { s, links } = await twoGuests();
    const base = await serve(s);
    const a = await put(base, '/api/v1/vms/a/balloon', '{"targetMib":100}');
    expect(a.status).toBe(202);
    expect(a.text).toBe(JSON.stringify(s.vmView('a')));
    expect(JSON.parse(a.text)).toMatchObject({ name: 'a', state: 'running', balloon: { targetMib: 100 } });
    expect(a.headers[ACCESS_HEADER]).toBe('admin');
    expect(a.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(a.headers['cache-control']).toBe('no-store');
    expect(Number(a.headers['content-length'])).toBe(Buffer.byteLength(a.text));
    expect(links.a.targets.at(-1)?.[0]).toBe(100);
    // An escaped name is the same VM.
    expect((await put(base, '/api/v1/vms/%61/balloon', '{"targetMib":50}')).status).toBe(202);
    expect(links.a.targets.at(-1)?.[0]).toBe(50);
  });

  it('setBalloonAtOnce: applied and sent before it returns; undefined, with nothing changed, while the quota lock is busy', async () => {
    const { s, links, open, reach, othersReach } = await threeGuests();
    await open('a', 512);
    await open('b', 512);
    // An inflate costs nothing: at once, sent before the call returns.
    expect(s.setBalloonAtOnce('a', 300)?.balloon?.targetMib).toBe(300);
    expect(links.a.targets.at(-1)?.[0]).toBe(300);
    reach('a');
    // A deflate the free quota covers, the lock idle: at once too.
    expect(s.setBalloonAtOnce('a', 250, 'policy', { reclaim: false })?.balloon?.targetMib).toBe(250);
    reach('a');
    await open('c', 250); // takes the free quota
    expect(s.hostView().pool.freeMib).toBe(0);
    // A deflate to 0 needs 250 MiB reclaimed from the others: it holds the lock while they inflate.
    const deflate = s.setBalloon('a', 0);
    const sentA = links.a.targets.length;
    expect(s.setBalloonAtOnce('a', 100)).toBeUndefined();
    // The policy's inflate costs nothing, yet takes its turn behind the busy lock.
    const sentB = links.b.targets.length;
    expect(s.setBalloonAtOnce('b', 50, 'policy', { reclaim: false })).toBeUndefined();
    expect(links.a.targets.length).toBe(sentA);
    expect(links.b.targets.length).toBe(sentB);
    expect(s.vmView('a').balloon?.targetMib).toBe(250);
    await othersReach();
    expect((await deflate).balloon?.targetMib).toBe(0);
    expect(links.a.targets.at(-1)?.[0]).toBe(0);
  });

  it('a PUT that must wait for the lock answers the same way once it has its turn', async () => {
    const { s, links, open, reach, othersReach } = await threeGuests();
    await open('a', 512);
    await open('b', 512);
    s.setBalloonAtOnce('a', 250);
    reach('a');
    await open('c', 250);
    const base = await serve(s);
    const deflate = s.setBalloon('a', 0);
    const answer = put(base, '/api/v1/vms/a/balloon', '{"targetMib":100}');
    await othersReach();
    await deflate;
    const a = await answer;
    expect(a.status).toBe(202);
    expect(a.text).toBe(JSON.stringify(s.vmView('a')));
    expect(JSON.parse(a.text).balloon.targetMib).toBe(100);
    expect(a.headers[ACCESS_HEADER]).toBe('admin');
    expect(links.a.targets.at(-1)?.[0]).toBe(100);
  });

  it('refuses bad input with the same errors and headers, changing nothing', async () => {
    const { s, links } = await twoGuests();
    const base = await serve(s);
    const cases: Array<[string, string, number, string]> = [
      ['/api/v1/vms/a/balloon', '{"targetMib":500}', 400, 'out_of_range'],
      ['/api/v1/vms/a/balloon', '{"targetMib":"1"}', 400, 'invalid_argument'],
      ['/api/v1/vms/a/balloon', '{"targetMib":', 400, 'invalid_argument'],
      ['/api/v1/vms/a/balloon', '[1]', 400, 'invalid_argument'],
      ['/api/v1/vms/ghost/balloon', '{"targetMib":1}', 404, 'not_found'],
      ['/api/v1/vms/%zz/balloon', '{"targetMib":1}', 400, 'invalid_argument'],
    ];
    for (const [path, body, status, code] of cases) {
      const a = await put(base, path, body);
      expect({ path, body, status: a.status, code: JSON.parse(a.text).error.code }).toEqual({ path, body, status, code });
      expect(a.headers[ACCESS_HEADER]).toBe('admin');
    }
    const ro = await put(base, '/api/v1/vms/a/balloon', '{"targetMib":1}', READONLY);
    expect([ro.status, JSON.parse(ro.text).error.code]).toEqual([403, 'forbidden']);
    const none = await put(base, '/api/v1/vms/a/balloon', '{"targetMib":1}', 'wrong');
    expect([none.status, JSON.parse(none.text).error.code]).toEqual([401, 'unauthorized']);
    expect(links.a.targets).toEqual([]);
    expect(s.vmView('a').balloon?.targetMib).toBe(0);
    // Other methods on the path still go through the router's table.
    const get = await new Promise<number>((resolve) =>
      request(`${base}/api/v1/vms/a/balloon`, { headers: { authorization: `Bearer ${ADMIN}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).end(),
    );
    expect(get).toBe(405);
  });
});
