// Fault drills on the registry's storage: the SQLite file locked by another
// process (BEGIN EXCLUSIVE held), and a full disk (a tiny tmpfs, when we may
// mount one). A command that must write fails with a clear one-line error
// (HostError `storage`, HTTP 503), and the running state is unchanged: the VM
// list, the settings, the running guest and its balloon.
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { VmView } from '@memballoon/host';
import { adminTokenOf, apiGet, ctl, ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir, type StartedHost } from './support/host.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

afterAll(async () => {
  await stopAll();
});

async function stateOf(host: StartedHost): Promise<unknown> {
  const vms = await apiGet<VmView[]>(host.url, '/vms');
  // What the drill must not change (uptime, stats and the like move on their own).
  return vms.map((v) => ({
    name: v.name,
    state: v.state,
    memoryMib: v.memoryMib,
    defaultBalloonMib: v.defaultBalloonMib,
    memoryWeight: v.memoryWeight,
    balloon: v.balloon && { targetMib: v.balloon.targetMib, actualMib: v.balloon.actualMib },
  }));
}

async function expectStorageFailures(host: StartedHost): Promise<void> {
  const create = await ctl(host.url, 'createvm', '--name', 'drill-new', '--memory', '128');
  expect(create.code).not.toBe(0);
  expect(create.stderr.trim().split('\n')).toHaveLength(1);
  expect(create.stderr).toMatch(/balloonctl: error: registering VM 'drill-new': the VM registry failed \(SQLITE_/);
  const modify = await ctl(host.url, 'modifyvm', 'drill-off', '--memory-weight', '900');
  expect(modify.code).not.toBe(0);
  expect(modify.stderr).toMatch(/modifying VM 'drill-off': the VM registry failed \(SQLITE_/);
  const res = await fetch(`${host.url}/api/v1/vms/drill-off`, { method: 'DELETE', headers: { authorization: `Bearer ${adminTokenOf(host.url)}` } });
  expect(res.status).toBe(503);
  expect(((await res.json()) as { error: { code: string } }).error.code).toBe('storage');
}

async function setUp(dataDir: string): Promise<StartedHost> {
  const host = await spawnHost({ dataDir, poolSizeMib: 512 });
  expect((await ctl(host.url, 'createvm', '--name', 'drill-run', '--memory', '256')).code).toBe(0);
  expect((await ctl(host.url, 'createvm', '--name', 'drill-off', '--memory', '128')).code).toBe(0);
  spawnAgent({ url: host.url, name: 'drill-run', memoryMib: 256, floorMib: 16 });
  await waitFor(async () => (await apiGet<VmView>(host.url, '/vms/drill-run')).state === 'running', { what: 'drill-run to run', timeoutMs: 30_000 });
  expect((await ctl(host.url, 'controlvm', 'drill-run', 'guestmemoryballoon', '32', '--wait')).code).toBe(0);
  return host;
}

async function expectStillWorking(host: StartedHost): Promise<void> {
  // Balloons need no storage: the running guest is still driven.
  expect((await ctlJson<VmView>(host.url, 'controlvm', 'drill-run', 'guestmemoryballoon', '40', '--wait')).balloon).toMatchObject({
    targetMib: 40,
    actualMib: 40,
  });
}

describe('registry storage faults', () => {
  it('a locked SQLite file: createvm, modifyvm and unregistervm fail with a storage error; nothing changes; all works once the lock goes', async () => {
    const data = tempDataDir();
    let host: StartedHost | undefined;
    try {
      host = await setUp(data.dir);
      const before = await stateOf(host);
      const db = new Database(join(data.dir, 'registry.sqlite'));
      db.pragma('busy_timeout = 0');
      db.exec('BEGIN EXCLUSIVE');
      try {
        await expectStorageFailures(host);
        expect(await stateOf(host)).toEqual(before);
        await expectStillWorking(host);
      } finally {
        db.exec('ROLLBACK');
        db.close();
      }
      expect((await ctl(host.url, 'createvm', '--name', 'drill-new', '--memory', '128')).code).toBe(0);
      expect((await ctl(host.url, 'modifyvm', 'drill-off', '--memory-weight', '900')).code).toBe(0);
    } finally {
      await cleanUp(
        () => host?.stop(),
        () => data.remove(),
      );
    }
  });

  it('a full disk: the same commands fail with a storage error and change nothing', async (ctx) => {
    const mountPoint = mkdtempSync(join(tmpdir(), 'memballoon-full-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint], { stdio: 'pipe' });
    } catch (err) {
      rmSync(mountPoint, { recursive: true, force: true });
      const why = `cannot mount a tmpfs to fill (${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}); needs root`;
      console.warn(`drill-storage: full-disk drill skipped: ${why}`);
      ctx.skip();
      return;
    }
    let host: StartedHost | undefined;
    try {
      const dataDir = join(mountPoint, 'data');
      host = await setUp(dataDir);
      const before = await stateOf(host);
      // Fill the file system to the last block.
      const filler = join(mountPoint, 'filler');
      const fd = openSync(filler, 'w');
      const chunk = Buffer.alloc(64 * 1024, 1);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
      }
      try {
        for (;;) writeSync(fd, chunk, 0, 512);
      } catch {
        // full to the last small block
      }
      closeSync(fd);
      await expectStorageFailures(host);
      expect(await stateOf(host)).toEqual(before);
      await expectStillWorking(host);
      unlinkSync(filler);
      expect((await ctl(host.url, 'createvm', '--name', 'drill-new', '--memory', '128')).code).toBe(0);
    } finally {
      await cleanUp(
        stopAll,
        () => execFileSync('umount', ['-l', mountPoint]),
        () => rmSync(mountPoint, { recursive: true, force: true }),
      );
    }
  });
});
