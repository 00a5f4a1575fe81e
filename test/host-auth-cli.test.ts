// Issue 8 through the real CLIs: createvm shows the guest token once (text and
// --json); the agent with it runs, with a wrong one it exits 1 naming
// auth_failed; balloonctl without the admin token gets a one-line 401 hint,
// with --admin-token or the data dir's file it works.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { VmView } from '@memballoon/host';
import { adminTokenOf, apiGet, BIN, ctl, ctlJson, runtimeDirOf, spawnAgent, spawnHost, stopAll, tempDataDir, type StartedHost } from './support/host.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;

beforeAll(async () => {
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: 1024 });
});
afterAll(async () => {
  await cleanUp(stopAll, () => data.remove());
});

/** balloonctl with exactly the environment given (no data dir, no token unless said; NODE_OPTIONS kept so it runs from src). */
function bare(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN.ctl, '--host', host.url, ...args],
      { env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: process.env.NODE_OPTIONS ?? '', HOME: data.dir, XDG_DATA_HOME: `${data.dir}/nowhere`, ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

it('createvm shows the guest token once; the agent runs with it and exits 1 with a wrong one', async () => {
  const text = await ctl(host.url, 'createvm', '--name', 'cli-a', '--memory', '128');
  expect(text.code).toBe(0);
  const token = /^Token: (\S+)$/m.exec(text.stdout)?.[1];
  expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(text.stdout).toMatch(/not shown again/);
  const json = await ctlJson<VmView & { token: string }>(host.url, 'createvm', '--name', 'cli-b', '--memory', '128');
  expect(json.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  // Never shown again.
  expect((await ctl(host.url, 'showvminfo', 'cli-a', '--json')).stdout).not.toContain(token!);

  const wrong = spawnAgent({ url: host.url, name: 'cli-a', memoryMib: 128, floorMib: 16, extra: ['--token', 'not-the-token'] });
  // A final refusal: the agent exits by itself.
  expect(await waitFor(() => wrong.proc.exitCode ?? undefined, { what: 'the agent with a wrong token to exit', timeoutMs: 20_000 })).toBe(1);
  expect(wrong.output()).toMatch(/auth_failed|token/);

  const right = spawnAgent({ url: host.url, name: 'cli-a', memoryMib: 128, floorMib: 16, extra: ['--token', token!] });
  await waitFor(async () => (await apiGet<VmView>(host.url, '/vms/cli-a')).state === 'running', { what: 'cli-a to run', timeoutMs: 20_000 });
  await right.stop();
});

it('balloonctl needs the admin token: a one-line 401 naming the places tried; --admin-token, the env var, --data-dir or the host record work', async () => {
  const none = await bare(['list', 'vms']);
  expect(none.code).toBe(1);
  expect(none.stderr.trim().split('\n')).toHaveLength(1);
  const defaultFile = `${data.dir}/nowhere/memballoon/admin.token`;
  expect(none.stderr.trim()).toBe(
    `balloonctl: error: the host at ${host.url} needs the admin token and none was found (tried --admin-token, MEMBALLOON_ADMIN_TOKEN, ${defaultFile}); pass --admin-token T, --data-dir DIR or --host URL of the host that wrote it`,
  );
  // Said once: the host's own hint about the token is not repeated beside it.
  expect(none.stderr.match(/admin token/g)).toHaveLength(1);
  const noneJson = await bare(['list', 'vms', '--json']);
  expect(noneJson.code).toBe(1);
  expect(JSON.parse(noneJson.stderr)).toEqual({ error: { code: 'unauthorized', message: expect.stringContaining(defaultFile) } });
  const wrong = await bare(['list', 'vms', '--admin-token', 'nope']);
  expect(wrong.code).toBe(1);
  expect(wrong.stderr.trim()).toBe(`balloonctl: error: the host at ${host.url} refused the admin token from --admin-token (the admin token is wrong)`);
  // The host's record (written at start-up in its runtime dir) leads to its data dir: no flags needed.
  expect(await bare(['list', 'vms'], { MEMBALLOON_RUNTIME_DIR: runtimeDirOf(data.dir) })).toMatchObject({ code: 0, stderr: '' });
  // A record of another URL (here: a port nobody serves) is not used for this one.
  const elsewhere = await bare(['--host', 'http://127.0.0.1:1', 'list', 'vms'], { MEMBALLOON_RUNTIME_DIR: runtimeDirOf(data.dir) });
  expect(elsewhere.stderr).toMatch(/cannot reach the host at http:\/\/127\.0\.0\.1:1/);
  const token = adminTokenOf(host.url)!;
  expect((await bare(['list', 'vms', '--admin-token', token])).code).toBe(0);
  expect((await bare(['list', 'vms'], { MEMBALLOON_ADMIN_TOKEN: token })).code).toBe(0);
  expect((await bare(['--data-dir', data.dir, 'list', 'vms'])).code).toBe(0);
  expect((await bare(['list', 'vms'], { MEMBALLOON_DATA_DIR: data.dir })).code).toBe(0);
});
