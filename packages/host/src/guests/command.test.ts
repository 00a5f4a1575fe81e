import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkCommand, findUser, MAX_COMMAND_ARGS, resolveCommand } from './command.js';
import { isSameProcess, procStartTicks, signal } from './proc.js';
import { GuestStateDir } from './state.js';

const dir = mkdtempSync(join(tmpdir(), 'memballoon-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('startvm command checks', () => {
  it('takes a non-empty array of strings and refuses the rest', () => {
    expect(checkCommand(['sleep', '1'])).toEqual(['sleep', '1']);
    for (const bad of [undefined, 'sleep', [], [''], [1], ['a\0b'], Array(MAX_COMMAND_ARGS + 1).fill('x'), ['x'.repeat(5000)]])
      expect(() => checkCommand(bad)).toThrow(expect.objectContaining({ code: 'invalid_argument' }));
  });

  it('finds a command on PATH as execvp does, and says so when it is not there', () => {
    const exe = join(dir, 'my-tool');
    writeFileSync(exe, '#!/bin/sh\n');
    chmodSync(exe, 0o755);
    const plain = join(dir, 'not-exec');
    writeFileSync(plain, '');
    expect(resolveCommand('my-tool', `/nonexistent:${dir}`)).toBe(exe);
    expect(resolveCommand(exe, '')).toBe(exe);
    expect(() => resolveCommand('not-exec', dir)).toThrow(/not found on PATH/);
    expect(() => resolveCommand(plain, dir)).toThrow(/not an executable file/);
    expect(() => resolveCommand(dir, dir)).toThrow(/not an executable file/);
    expect(() => resolveCommand('nope', '/nonexistent')).toThrow(/'nope' not found on PATH \(\/nonexistent\)/);
  });

  it('finds a user by name or uid in /etc/passwd text', () => {
    const passwd = 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nbroken line\n';
    expect(findUser(passwd, 'nobody')).toEqual({ name: 'nobody', uid: 65534, gid: 65534, home: '/nonexistent' });
    expect(findUser(passwd, '0').name).toBe('root');
    expect(() => findUser(passwd, 'ghost')).toThrow(/no such user: 'ghost'/);
    expect(() => findUser(passwd, 'broken line')).toThrow(/no such user/);
  });
});

describe('guest records and processes', () => {
  it('writes, reads and removes records; unreadable files are reported, not fatal', () => {
    const state = new GuestStateDir(dir);
    expect(state.loadAll(() => {})).toEqual([]);
    state.save({ name: 'a b', kind: 'startvm', cgroupDir: '/cg/a', agentPid: 1, agentStartTicks: 2, launchTokenHash: 'sha256:00' });
    state.save({ name: '..', kind: 'adopted', cgroupDir: '/cg/x' });
    writeFileSync(join(state.dir, 'junk.json'), '{');
    const bad: string[] = [];
    const records = state.loadAll((file) => bad.push(file));
    expect(records.map((r) => r.name).sort()).toEqual(['..', 'a b']);
    expect(bad).toEqual([join(state.dir, 'junk.json')]);
    state.remove('a b');
    state.remove('missing');
    expect(state.loadAll(() => {}).map((r) => r.name)).toEqual(['..']);
  });

  it('knows a process by pid and start time', () => {
    const ticks = procStartTicks(process.pid);
    expect(ticks).toBeGreaterThan(0);
    expect(isSameProcess(process.pid, ticks!)).toBe(true);
    expect(isSameProcess(process.pid, ticks! + 1)).toBe(false);
    expect(procStartTicks(2 ** 30)).toBeUndefined();
    expect(signal(2 ** 30, 0)).toBe(false);
    expect(signal(process.pid, 0)).toBe(true);
  });
});
