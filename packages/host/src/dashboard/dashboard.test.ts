import { get, request, type IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { SnapshotEvent } from './events.js';
import { startFakeHost, type FakeHost } from './test-fixtures.js';

/** Deadline and poll interval for what the tests wait for. */
const WAIT = { timeout: 10_000, interval: 10 };

/** Polls until `probe` is truthy or the deadline passes. */
function fetchRaw(
  url: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An SSE client that collects `snapshot` events. */
function subscribe(url: string): Promise<{ events: SnapshotEvent[]; res: IncomingMessage; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      const events: SnapshotEvent[] = [];
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^data: (.*)$/m.exec(block);
          if (/^event: snapshot$/m.test(block) && data) events.push(JSON.parse(data[1]!) as SnapshotEvent);
        }
      });
      resolve({ events, res, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

describe('createDashboard mounted on an HTTP server', () => {
  let host: FakeHost | undefined;
  afterEach(async () => {
    await host?.close();
    host = undefined;
  });

  it('serves the page, its assets and uPlot from node_modules, and leaves other paths alone', async () => {
    host = await startFakeHost();
    const page = await fetchRaw(`${host.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.body).toContain('<script src="/assets/app.js" defer></script>');
    expect(page.body).not.toMatch(/https?:\/\//); // nothing from the internet

    const uplot = await fetchRaw(`${host.url}/assets/uPlot.iife.min.js`);
    expect(uplot.status).toBe(200);
    expect(uplot.headers['content-type']).toMatch(/^text\/javascript/);
    expect(uplot.body).toContain('uPlot');
    expect((await fetchRaw(`${host.url}/assets/uPlot.min.css`)).body).toContain('.uplot');
    expect((await fetchRaw(`${host.url}/assets/app.css`)).status).toBe(200);
    expect((await fetchRaw(`${host.url}/assets/app.js?v=1`)).status).toBe(200);

    const again = await fetchRaw(`${host.url}/`, { headers: { 'if-none-match': String(page.headers.etag) } });
    expect(again.status).toBe(304);
    expect((await fetchRaw(`${host.url}/`, { method: 'HEAD' })).body).toBe('');
    expect((await fetchRaw(`${host.url}/`, { method: 'POST' })).status).toBe(405);
    // Not the dashboard's: the fake host's own 404.
    const other = await fetchRaw(`${host.url}/assets/../etc/passwd`);
    expect(other.status).toBe(404);
    expect(JSON.parse(other.body)).toEqual({ error: { code: 'not_found', message: 'no such route' } });
  });

  it('streams a snapshot on connect and a new one after a change', async () => {
    host = await startFakeHost();
    const sse = await subscribe(`${host.url}/api/v1/events`);
    expect(sse.res.headers['content-type']).toMatch(/^text\/event-stream/);
    const first = await vi.waitUntil(() => sse.events[0], WAIT); // the first snapshot
    expect(
      first.vms
        .filter((vm) => vm.state === 'running')
        .map((vm) => vm.name)
        .sort(),
    ).toEqual(['vm-large', 'vm-medium', 'vm-small']);
    expect(first.host.pool.sizeMib).toBe(1536);

    host.update('vm-small', (vm) => {
      vm.balloon!.targetMib = 100;
      vm.balloon!.actualMib = 100;
    });
    const next = await vi.waitUntil(() => sse.events.find((e) => e.vms.find((vm) => vm.name === 'vm-small')?.balloon?.actualMib === 100), WAIT); // the changed snapshot
    expect(next.host.pool.reclaimedMib).toBe(first.host.pool.reclaimedMib + 100);
    sse.close();
  });

  it('coalesces a burst of changes into far fewer events, ending with the newest state', async () => {
    host = await startFakeHost({ minIntervalMs: 250 });
    const sse = await subscribe(`${host.url}/api/v1/events`);
    await vi.waitUntil(() => sse.events.length === 1, WAIT); // the first snapshot
    for (let i = 1; i <= 200; i++) host.update('vm-small', (vm) => (vm.balloon!.actualMib = i));
    await vi.waitUntil(() => sse.events.at(-1)?.vms.find((vm) => vm.name === 'vm-small')?.balloon?.actualMib === 200, WAIT); // the newest state
    // 200 synchronous changes: one event.
    expect(sse.events).toHaveLength(2);
    sse.close();
  });

  it('keeps serving the others when a client disconnects, and close() ends open streams', async () => {
    host = await startFakeHost();
    const first = await subscribe(`${host.url}/api/v1/events`);
    const second = await subscribe(`${host.url}/api/v1/events`);
    await vi.waitUntil(() => first.events.length > 0 && second.events.length > 0, WAIT); // both snapshots
    first.close();
    const connections = () => new Promise<number>((resolve, reject) => host!.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    await vi.waitUntil(async () => (await connections()) <= 1, WAIT); // the first client to go away
    host.update('vm-small', (vm) => (vm.balloon!.actualMib = 7));
    await vi.waitUntil(() => second.events.length === 2, WAIT); // the second client to get the change
    const ended = new Promise<void>((resolve) => second.res.on('end', resolve));
    host.dashboard.close();
    await ended;
  });

  it('the fake balloon route moves the actual value and refuses the 90 % rule', async () => {
    host = await startFakeHost();
    const put = (name: string, targetMib: number) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${host!.url}/api/v1/vms/${name}/balloon`, { method: 'PUT', headers: { 'content-type': 'application/json' } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ targetMib }));
      });
    expect((await put('vm-large', 922)).status).toBe(422);
    expect((await put('vm-large', 800)).status).toBe(202);
    await vi.waitUntil(() => host!.vms.find((vm) => vm.name === 'vm-large')?.balloon?.actualMib === 800, WAIT); // the fake guest to inflate
  });
});
