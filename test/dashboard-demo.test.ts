// `npm start` end to end: scripts/demo.ts starts the host and three agents,
// prints the dashboard's URL; a second demo on the same port fails with one
// line; Ctrl-C (SIGINT) stops the agents (each says goodbye to the host), then
// the host, and the demo exits 0. Port 0 and a temporary data dir, so it runs
// beside a real demo.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A demo process and what it printed so far. */
interface Demo {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exitCode: Promise<number | null>;
}

/** Where the demo's host records itself for balloonctl (a temporary directory, so a real demo's record is untouched). */
const runtimeDir = mkdtempSync(join(tmpdir(), 'memballoon-demo-run-'));

function runDemo(args: readonly string[]): Demo {
  const env = { ...process.env, MEMBALLOON_RUNTIME_DIR: runtimeDir };
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const demo: Demo = { child, stdout: '', stderr: '', exitCode: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (demo.stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (demo.stderr += chunk));
  return demo;
}

/** The first snapshot of the dashboard's event stream. */
function snapshotOf(
  baseUrl: string,
  adminToken: string | undefined,
): Promise<{ host: { pool: { sizeMib: number; heldMib: number } }; vms: Array<{ name: string; state: string; memoryMib: number }> }> {
  return new Promise((resolve, reject) => {
    const headers = adminToken ? { authorization: `Bearer ${adminToken}` } : {};
    const req = get(`${baseUrl}/api/v1/events`, { headers }, (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        const data = /^event: snapshot\ndata: (.*)\n\n/m.exec(buffer);
        if (!data) return;
        req.destroy();
        resolve(JSON.parse(data[1]!));
      });
    });
    req.on('error', reject);
  });
}

describe('npm start (scripts/demo.ts)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-demo-'));
  let demo: Demo | undefined;

  afterAll(async () => {
    if (demo && demo.child.exitCode === null) {
      demo.child.kill('SIGINT');
      await demo.exitCode;
    }
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(runtimeDir, { recursive: true, force: true });
  }, 60_000);

  it('runs the host and three agents, refuses a second run, and stops cleanly on Ctrl-C', async () => {
    demo = runDemo(['--port', '0', '--data-dir', dataDir]);
    const running = demo;
    await waitFor(() => running.stdout.includes('Ctrl-C stops everything.') || running.child.exitCode !== null, {
      timeoutMs: 90_000,
      what: 'the demo to be ready',
    });
    expect(running.stderr).toBe('');
    // The URL carries the admin token when the host requires one (the page keeps it, balloonctl reads the data dir's).
    const dashboard = /Dashboard\s+(http:\/\/127\.0\.0\.1:\d+)\/(?:#token=(\S+))?\n/.exec(running.stdout);
    expect(dashboard).not.toBeNull();
    const [, url, adminToken] = dashboard!;
    const ctl = `npx balloonctl --host ${url}`;
    expect(running.stdout).toContain(`${ctl} controlvm vm-large guestmemoryballoon 256 --wait`);
    // The printed commands work as printed: balloonctl finds the demo's token
    // through the host's record, with no data dir or token in the environment.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, NODE_OPTIONS: process.env.NODE_OPTIONS, HOME: dataDir, MEMBALLOON_RUNTIME_DIR: runtimeDir };
    const list = spawnSync(process.execPath, [join(ROOT, 'packages/host/bin/balloonctl.mjs'), '--host', url!, 'list', 'vms'], { env, encoding: 'utf8' });
    expect(list.stderr).toBe('');
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/^"vm-large" \(1024 MiB, running/m);

    // Three guests, more memory than the pool, all admitted: balloons hold the difference.
    const snapshot = await snapshotOf(url!, adminToken);
    const guests = snapshot.vms.filter((vm) => vm.state === 'running').map((vm) => [vm.name, vm.memoryMib]);
    expect(guests.sort()).toEqual([
      ['vm-large', 1024],
      ['vm-medium', 768],
      ['vm-small', 512],
    ]);
    expect(snapshot.host.pool.sizeMib).toBe(1536);
    expect(snapshot.host.pool.heldMib).toBeLessThanOrEqual(1536);

    // A second demo on the same port: one line, no stack trace.
    const second = runDemo(['--port', new URL(url!).port, '--data-dir', dataDir]);
    expect(await second.exitCode).toBe(1);
    expect(second.stderr).toMatch(/^memballoon demo: 127\.0\.0\.1:\d+ is already in use[^\n]*\n$/);

    // Ctrl-C: agents first (each says goodbye to the host), then the host.
    running.child.kill('SIGINT');
    expect(await running.exitCode).toBe(0);
    expect(running.stdout).toMatch(/vm-small\s+stopped\n\s+vm-medium\s+stopped\n\s+vm-large\s+stopped\n\s+host\s+stopped\n/);
    const hostLog = readFileSync(join(dataDir, 'logs', 'host.log'), 'utf8');
    const goodbyes = hostLog
      .split('\n')
      .filter((line) => line.includes('"guest said goodbye"'))
      .map((line) => (JSON.parse(line) as { vm: string }).vm)
      .sort();
    expect(goodbyes).toEqual(['vm-large', 'vm-medium', 'vm-small']);
  });
});
