import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cgroupLimitBytes, findMemoryCgroup } from '../domain/readers.js';
import { StubHost } from '../test-support/stub-host.js';
import { poll } from '../test-support/poll.js';

/** Whether this process's memory cgroup has a limit (a child inherits it). */
function hasCgroupLimit(): boolean {
  const loc = findMemoryCgroup();
  return loc !== null && cgroupLimitBytes(loc) !== null;
}

// Every temp dir of this file, removed at the end even when a test fails midway.
const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const BIN = fileURLToPath(new URL('../../bin/balloon-agent.mjs', import.meta.url));

function run(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): { child: ChildProcess; stderr: () => string; exit: Promise<[number | null, NodeJS.Signals | null]> } {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { child, stderr: () => err, exit: once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]> };
}

describe('balloon-agent CLI', () => {
  let host: StubHost;
  beforeEach(async () => {
    host = await StubHost.start();
  });
  afterEach(async () => {
    await host.close();
  });

  it('inflates on Welcome, then on SIGTERM deflates, says Goodbye and exits 0', async () => {
    const { child, exit } = run(['--host', host.url, '--name', 'cli-vm', '--memory-mib', '2048', '--log-level', 'warn']);
    const conn = await poll(() => host.latest, 'a connection');
    const hello = await poll(() => host.received(conn, 'hello')[0], 'Hello');
    expect(hello.facts).toMatchObject({ pid: child.pid, totalMemoryMib: 2048, domain: 'process' });
    host.welcome(conn, { targetMib: 32, generation: 1 });
    await poll(() => host.received(conn, 'balloonStatus').find((s) => s.actualMib === 32 && s.state === 'steady'), 'the balloon at 32 MiB');
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
    expect(rss).toBeGreaterThan(32);
    child.kill('SIGTERM');
    const [code] = await exit;
    expect(code).toBe(0);
    expect(host.received(conn, 'balloonStatus').at(-1)).toMatchObject({ actualMib: 0 });
    expect(host.received(conn, 'goodbye')[0]?.reason).toBe('shutdown');
  });

  it('runs a wrapped workload and exits with its exit code', async () => {
    // The workload ends when the test says so (a file appears), not after a fixed time: the agent's start may take long on a busy machine.
    const go = join(tempDir('agent-wrap-'), 'go');
    const workload = `setInterval(() => { if (require('fs').existsSync(${JSON.stringify(go)})) process.exit(3); }, 20)`;
    const { exit } = run(['--host', host.url, '--name', 'wrap-vm', '--log-level', 'silent', '--memory-mib', '1024', '--', process.execPath, '-e', workload]);
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => host.received(conn, 'hello')[0], 'Hello');
    host.welcome(conn, { targetMib: 4, generation: 1 });
    writeFileSync(go, '');
    const [code] = await exit;
    expect(code).toBe(3);
    await poll(() => host.received(conn, 'goodbye')[0], 'Goodbye');
  });

  it('keeps its token from the workload it wraps (MEMBALLOON_TOKEN is not inherited)', async () => {
    // The workload writes what it sees to a file and stays until the agent stops it: no race with the agent's start.
    const seen = join(tempDir('agent-env-'), 'seen.json');
    const probe = `require('fs').writeFileSync(${JSON.stringify(seen)}, JSON.stringify({ token: process.env.MEMBALLOON_TOKEN ?? null, other: process.env.WORKLOAD_SEES ?? null })); setInterval(() => {}, 1000)`;
    const { child, exit } = run(['--host', host.url, '--name', 'env-vm', '--log-level', 'silent', '--memory-mib', '256', '--', process.execPath, '-e', probe], {
      ...process.env,
      MEMBALLOON_TOKEN: 'secret-token',
      WORKLOAD_SEES: 'yes',
    });
    const conn = await poll(() => host.latest, 'a connection');
    // The agent itself did use the token.
    expect((await poll(() => host.received(conn, 'hello')[0], 'Hello')).credential).toBe('secret-token');
    const view = JSON.parse(
      await poll(() => (existsSync(seen) ? readFileSync(seen, 'utf8') || undefined : undefined), 'the workload to report its environment'),
    );
    expect(view).toEqual({ token: null, other: 'yes' });
    child.kill('SIGTERM');
    expect((await exit)[0]).toBe(0);
  });

  it('--log-pretty: human-readable lines that name the host URL it connects to', async () => {
    const { child, stderr, exit } = run(['--host', host.url, '--name', 'pretty-vm', '--memory-mib', '256', '--log-pretty', '--log-level', 'info']);
    const conn = await poll(() => host.latest, 'a connection');
    await poll(() => host.received(conn, 'hello')[0], 'Hello');
    const endpoint = `${host.url.replace('http:', 'ws:')}/v1/guest`;
    await poll(() => stderr().includes(`connecting to ${endpoint}`), 'the start-up line');
    expect(stderr()).toMatch(/INFO.*agent started: VM 'pretty-vm' of 256 MiB \(process domain\), connecting to ws:\/\/127\.0\.0\.1:\d+\/v1\/guest/);
    // Pretty, not JSON lines.
    expect(stderr()).not.toMatch(/^\{"level"/m);
    child.kill('SIGTERM');
    expect((await exit)[0]).toBe(0);
  });

  // Where the agent's own cgroup has a limit, that is the VM's size and no flag is needed.
  it.skipIf(hasCgroupLimit())('without --memory-mib (and no cgroup limit) refuses to guess the whole machine: exit 2, one clear line', async () => {
    const { stderr, exit } = run(['--host', host.url, '--name', 'nosize']);
    const [code] = await exit;
    expect(code).toBe(2);
    expect(stderr()).toMatch(/^balloon-agent: the VM's memory size is unknown: .*Pass --memory-mib N.*--domain machine/);
    expect(host.connections.length).toBe(0);
  });

  it('refuses bad flags with a one-line reason and exit code 2', async () => {
    const { stderr, exit } = run(['--name', 'x', '--domain', 'nope']);
    const [code] = await exit;
    expect(code).toBe(2);
    expect(stderr()).toMatch(/^balloon-agent: --domain must be auto, machine, cgroup or process/);
  });
});
