// The CLIs answer at once (issue 15): --version comes from the package
// manifest without loading the command, and `balloonctl list vms` loads only
// what listing needs — no SQLite, no logger, no dashboard, no metrics, no
// WebSocket. Counted by a module loader hook that names every module the
// process loads, not timed (the timing is `npm run bench -- cli`).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from './support/host.js';
import { cleanUp } from './support/cleanup.js';

function run(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const manifestVersion = (pkg: string): string =>
  (JSON.parse(readFileSync(new URL(`../packages/${pkg}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;

describe('--version', () => {
  it.each([
    ['balloon-host', BIN.host, 'host'],
    ['balloonctl', BIN.ctl, 'host'],
    ['balloon-agent', BIN.agent, 'guest-agent'],
  ])('%s --version prints its package version and exits 0', async (_name, bin, pkg) => {
    const r = await run([bin, '--version']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(`${manifestVersion(pkg)}\n`);
  });

  it('--version with a command is not swallowed: balloonctl refuses the command line (exit 2, a usage error)', async () => {
    const r = await run([BIN.ctl, '--version', 'list']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^balloonctl: error: --version takes no command \(got 'list'\)/);
  });
});

describe('balloonctl list vms loads only what it needs', () => {
  let dir: string;
  let server: Server;
  let url: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'memballoon-cli-startup-'));
    // A loader hook that writes each loaded module's URL to a file (stderr is the command's).
    writeFileSync(
      join(dir, 'hooks.mjs'),
      `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) {\n  appendFileSync(${JSON.stringify(join(dir, 'loaded.txt'))}, url + '\\n');\n  return next(url, context);\n}\n`,
    );
    writeFileSync(
      join(dir, 'register.mjs'),
      `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`,
    );
    // The admin API's answer to GET /api/v1/vms: nothing else of a host is needed to list.
    server = createServer((req, res) => {
      res.writeHead(req.url === '/api/v1/vms' ? 200 : 404, { 'content-type': 'application/json' });
      res.end(req.url === '/api/v1/vms' ? '[]' : '{"error":{"code":"not_found","message":"no"}}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await cleanUp(
      () => server && new Promise((resolve) => server.close(resolve)),
      () => dir && rmSync(dir, { recursive: true, force: true }),
    );
  });

  it('lists through the admin API without loading SQLite, pino, pino-pretty, the dashboard, metrics or ws', async () => {
    const r = await run(['--import', pathToFileURL(join(dir, 'register.mjs')).href, BIN.ctl, '--host', url, '--admin-token', 't', 'list', 'vms', '--json']);
    expect(r.stderr).toBe('');
    expect(r).toMatchObject({ code: 0 });
    expect(JSON.parse(r.stdout)).toEqual([]);
    const loaded = readFileSync(join(dir, 'loaded.txt'), 'utf8').trim().split('\n');
    const ours = loaded.filter((u) => u.includes('/packages/host/') && !u.includes('/node_modules/'));
    // The hook saw the command itself: it was in the chain.
    expect(ours.some((u) => /\/cli\/balloonctl\.(ts|js)$/.test(u))).toBe(true);
    const heavy = loaded.filter((u) =>
      /better-sqlite3|\/pino|prom-client|\/ws\/|uplot|\/dashboard\/|\/registry\/|\/metrics\/prometheus|\/server\.(ts|js)$/.test(u),
    );
    expect(heavy).toEqual([]);
  });
});
