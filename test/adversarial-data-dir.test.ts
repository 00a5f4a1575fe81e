// Hostile files in the host's data directory, beyond the token files
// (host-security.test.ts): the registry and SQLite's files beside it. The
// host runs as root; whatever it finds there must not make it touch a file
// outside the directory, nor trust a registry another user can rewrite (it
// holds the guests' token hashes). Each case: the host refuses to start with
// a line that names the file, and nothing is changed.
import { chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { adminApi, startTestHost, testGuests } from './support/in-process-host.js';
import { BIN, spawnHost, stopAll, tempDataDir } from './support/host.js';

let data: ReturnType<typeof tempDataDir>;
let outside: ReturnType<typeof tempDataDir>;

beforeEach(async () => {
  data = tempDataDir();
  outside = tempDataDir();
  // A real registry with a VM in it, as a host leaves it.
  const host = await startTestHost({ dataDir: data.dir, poolSizeMib: 512 });
  host.service.createVm({ name: 'kept', memoryMib: 256 });
  await host.close();
});
afterEach(() => {
  data.remove();
  outside.remove();
});

const refusal = async () => {
  const err = await startTestHost({ dataDir: data.dir, poolSizeMib: 512 }).then(
    async (h) => {
      await h.close();
      return undefined;
    },
    (e: unknown) => e as Error & { code?: string },
  );
  expect(err, 'the host started').toBeDefined();
  return err as Error & { code?: string };
};

describe("the registry's files in a hostile data directory", () => {
  for (const side of ['registry.sqlite-wal', 'registry.sqlite-shm', 'registry.sqlite-journal']) {
    it(`${side} as a symbolic link to a file elsewhere: refused, and the file it points at keeps its mode and content`, async () => {
      const target = join(outside.dir, 'precious.txt');
      writeFileSync(target, 'not the host’s\n', { mode: 0o644 });
      symlinkSync(target, join(data.dir, side));
      const err = await refusal();
      expect(err.message).toContain(side);
      expect(err.message).toMatch(/symbolic link/);
      expect(lstatSync(target).mode & 0o777).toBe(0o644);
      expect(readFileSync(target, 'utf8')).toBe('not the host’s\n');
    });
  }

  it.runIf(process.geteuid?.() === 0)('a registry, or a file beside it, that belongs to another user: refused, naming the file and its owner', async () => {
    const registry = join(data.dir, 'registry.sqlite');
    const before = readFileSync(registry);
    chownSync(registry, 65534, 65534);
    let err = await refusal();
    expect(err.message).toContain(registry);
    expect(err.message).toContain('65534');
    expect(readFileSync(registry).equals(before)).toBe(true);
    chownSync(registry, 0, 0);

    const wal = join(data.dir, 'registry.sqlite-wal');
    writeFileSync(wal, '');
    chownSync(wal, 65534, 65534);
    err = await refusal();
    expect(err.message).toContain(wal);
    chownSync(wal, 0, 0);

    // Put right, the same directory starts with its VM.
    const host = await startTestHost({ dataDir: data.dir, poolSizeMib: 512 });
    try {
      expect(host.service.listVms(false).map((v) => v.name)).toEqual(['kept']);
    } finally {
      await host.close();
    }
  });
});

describe("startvm's log file in a hostile data directory", () => {
  it('logs/NAME.log as a symbolic link to a file elsewhere: startvm refuses it and writes nothing through it; logs itself as a link too', async () => {
    const host = await startTestHost({ dataDir: data.dir, poolSizeMib: 512, guests: testGuests({ forceProcessMode: true }) });
    try {
      host.service.createVm({ name: 'logged', memoryMib: 128 });
      const target = join(outside.dir, 'precious.txt');
      writeFileSync(target, 'not the host’s\n', { mode: 0o644 });
      mkdirSync(join(data.dir, 'logs'), { recursive: true, mode: 0o700 });
      symlinkSync(target, join(data.dir, 'logs', 'logged.log'));
      const r = await adminApi(host, 'POST', '/vms/logged/startvm', { command: ['sh', '-c', 'echo GUEST OUTPUT; sleep 600'] });
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.json.error.message).toContain('logged.log');
      expect(host.service.isRunning('logged') || host.service.isStarting('logged')).toBe(false);
      expect(readFileSync(target, 'utf8')).toBe('not the host’s\n');
      expect(lstatSync(target).mode & 0o777).toBe(0o644);

      // logs/ itself a link to a directory elsewhere: refused the same way, nothing written there.
      rmSync(join(data.dir, 'logs'), { recursive: true });
      symlinkSync(outside.dir, join(data.dir, 'logs'));
      const viaDir = await adminApi(host, 'POST', '/vms/logged/startvm', { command: ['sh', '-c', 'echo GUEST OUTPUT; sleep 600'] });
      expect(viaDir.status).toBeGreaterThanOrEqual(400);
      expect(viaDir.json.error.message).toContain('logs');
      expect(readdirSync(outside.dir)).toEqual(['precious.txt']);
      expect(host.service.isRunning('logged') || host.service.isStarting('logged')).toBe(false);
    } finally {
      await host.close();
    }
  });

  it('guests/NAME.json.tmp as a symbolic link: startvm writes its record beside it, never through it', async () => {
    const host = await startTestHost({ dataDir: data.dir, poolSizeMib: 512, guests: testGuests({ forceProcessMode: true }) });
    try {
      host.service.createVm({ name: 'recorded', memoryMib: 128 });
      const target = join(outside.dir, 'precious.txt');
      writeFileSync(target, 'not the host’s\n', { mode: 0o644 });
      mkdirSync(join(data.dir, 'guests'), { recursive: true, mode: 0o700 });
      symlinkSync(target, join(data.dir, 'guests', 'recorded.json.tmp'));
      const r = await adminApi(host, 'POST', '/vms/recorded/startvm', { command: ['sleep', '600'] });
      expect(r.status).toBe(200);
      expect(readFileSync(target, 'utf8')).toBe('not the host’s\n');
      expect(JSON.parse(readFileSync(join(data.dir, 'guests', 'recorded.json'), 'utf8'))).toMatchObject({ name: 'recorded', kind: 'startvm' });
      expect((await adminApi(host, 'POST', '/vms/recorded/poweroff')).status).toBe(200);
    } finally {
      await host.close();
    }
  });
});

describe('two hosts on one data directory', () => {
  it('the second refuses to start, naming the first; once the first is killed -9, a new one takes the directory over', async () => {
    try {
      const first = await spawnHost({ dataDir: data.dir, poolSizeMib: 512, extra: ['--no-cgroups'] });
      const second = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [BIN.host, '--listen', '127.0.0.1:0', '--data-dir', data.dir, '--pool-mib', '512', '--no-cgroups'], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, MEMBALLOON_RUNTIME_DIR: join(data.dir, 'run2') },
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
        child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
        // A second host that did start is the failure: end it so the test says so.
        const watchdog = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.once('exit', (code) => {
          clearTimeout(watchdog);
          resolve({ code, out });
        });
      });
      expect(second.code, second.out).not.toBe(0);
      expect(second.code, second.out).not.toBeNull();
      expect(second.out).toContain(`in use by balloon-host pid ${first.pid}`);
      expect(second.out).not.toMatch(/balloon-host listening/);

      await first.kill();
      const third = await spawnHost({ dataDir: data.dir, poolSizeMib: 512, extra: ['--no-cgroups'] });
      expect(readFileSync(join(data.dir, 'host.pid'), 'utf8')).toMatch(new RegExp(`^${third.pid} `));
      await third.stop();
      expect(() => readFileSync(join(data.dir, 'host.pid'))).toThrow(/ENOENT/);
    } finally {
      await stopAll();
    }
  });
});
