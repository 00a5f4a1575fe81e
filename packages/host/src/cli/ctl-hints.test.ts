// The admin client speaks to libraries too (@memballoon/testing): its errors
// name no balloonctl flag; balloonctl adds its own hints (where it looked for
// the token, --host). A closed port and a host that answers 401, for real.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostError } from '../errors.js';
import { AdminClient } from './client.js';
import { withCtlHints } from './ctl-hints.js';

const FLAGS = /--[a-z]|MEMBALLOON_/;

describe('admin client errors and balloonctl hints', () => {
  let server: Server;
  let url = '';
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"unauthorized","message":"the admin API needs the admin token"}}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  const failure = (p: Promise<unknown>) => p.then(() => expect.unreachable('it answered')).catch((e: unknown) => e as HostError);

  it('an unreachable host: the client says so without flags; balloonctl names --host', async () => {
    const e = await failure(new AdminClient('http://127.0.0.1:1', 't').vms());
    expect(e).toBeInstanceOf(HostError);
    expect(e.code).toBe('unreachable');
    expect(e.message).toBe('cannot reach the host at http://127.0.0.1:1 (ECONNREFUSED): is balloon-host running there?');
    expect(e.message).not.toMatch(FLAGS);
    const hinted = withCtlHints(e, 'http://127.0.0.1:1', { token: 't', source: '--admin-token', triedFiles: [] }) as HostError;
    expect(hinted).toMatchObject({ code: 'unreachable', message: `${e.message} (--host URL or MEMBALLOON_URL)` });
  });

  it("a 401: the client gives the host's words without flags; balloonctl names where it looked", async () => {
    const none = await failure(new AdminClient(url).vms());
    expect(none).toMatchObject({
      code: 'unauthorized',
      message: `the host at ${url} needs the admin token and none was given (the admin API needs the admin token)`,
    });
    expect(none.message).not.toMatch(FLAGS);
    const refused = await failure(new AdminClient(url, 'wrong').vms());
    expect(refused.message).toBe(`the host at ${url} refused the admin token (the admin API needs the admin token)`);
    expect(withCtlHints(none, url, { token: undefined, source: undefined, triedFiles: ['/d/admin.token'] })).toMatchObject({
      code: 'unauthorized',
      message: `the host at ${url} needs the admin token and none was found (tried --admin-token, MEMBALLOON_ADMIN_TOKEN, /d/admin.token); pass --admin-token T, --data-dir DIR or --host URL of the host that wrote it`,
    });
    expect(withCtlHints(refused, url, { token: 'wrong', source: '/d/admin.token', triedFiles: ['/d/admin.token'] })).toMatchObject({
      message: `the host at ${url} refused the admin token from /d/admin.token (the admin API needs the admin token)`,
    });
    // Anything else passes through untouched.
    const other = new HostError('not_found', 'no such VM');
    expect(withCtlHints(other, url, { token: 't', source: '--admin-token', triedFiles: [] })).toBe(other);
  });
});
