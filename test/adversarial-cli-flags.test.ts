// balloon-host with nonsense on its command line or in its environment: the
// contract (DESIGN.md) is a non-zero exit with a one-line reason on stderr,
// usage errors exiting 2. A bad --log-level reached pino, which threw: a stack
// trace and exit 1.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, tempDataDir } from './support/host.js';

let data: ReturnType<typeof tempDataDir>;
beforeAll(() => {
  data = tempDataDir();
});
afterAll(() => data.remove());

/** Runs balloon-host to its exit (it must refuse to start); its exit code and stderr. */
function refusedStart(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN.host, '--listen', '127.0.0.1:0', '--data-dir', data.dir, '--no-cgroups', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, MEMBALLOON_RUNTIME_DIR: `${data.dir}/run`, ...env },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    // A host that did start is a failure of the test: stop it so the test ends and says so.
    const watchdog = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(watchdog);
      resolve({ code, stderr });
    });
  });
}

it('a bad --log-level (flag or MEMBALLOON_LOG_LEVEL) is a usage error: exit 2, one line naming the levels', async () => {
  for (const [args, env] of [
    [['--log-level', 'nope'], {}],
    [[], { MEMBALLOON_LOG_LEVEL: 'verbose' }],
  ] as const) {
    const r = await refusedStart([...args], env);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/--log-level must be one of trace, debug, info, warn, error, fatal, silent/);
  }
});

it('other nonsense flags keep to the same contract', async () => {
  for (const args of [['--pool-mib', '-1'], ['--listen', '127.0.0.1:99999'], ['--poweroff-grace-ms', '1e99'], ['--no-such-flag']]) {
    const r = await refusedStart(args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
  }
});

it('balloon-agent --memory-mib above the protocol limit (16 TiB) exits 2 at once naming the limit, instead of sending a wrapped size for ever', async () => {
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    // Port 1: nothing listens, so an agent that did start would retry for ever (the watchdog ends it).
    const child = spawn(process.execPath, [BIN.agent, '--host', 'http://127.0.0.1:1', '--name', 'huge', '--memory-mib', '99999999999'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const watchdog = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(watchdog);
      resolve({ code, stderr });
    });
  });
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(/from 1 to 16777216 \(got 99999999999\)/);
});
