// balloonctl as an operator meets it (issue 17.2–17.5), the real CLI against a
// real host on port 0: help for every command, --version, exit codes (2 for
// the command line, 1 for the operation), JSON errors with the API's code,
// showvminfo --machinereadable, metrics list, units in metrics query --json.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmView } from '@memballoon/host';
import { ctl, ctlJson, spawnAgent, spawnHost, stopAll, tempDataDir, type StartedHost } from './support/host.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;

beforeAll(async () => {
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: 1024 });
  expect((await ctl(host.url, 'createvm', '--name', 'cli', '--memory', '256')).code).toBe(0);
});
afterAll(async () => {
  await cleanUp(stopAll, () => data.remove());
});

/** A generous deadline for tests that run balloonctl a dozen times (a node start-up each, slow on a busy machine). */
const MANY_RUNS_MS = 300_000;

const COMMANDS = ['list', 'showvminfo', 'showhostinfo', 'createvm', 'unregistervm', 'modifyvm', 'controlvm', 'metrics'];

describe('balloonctl help and version', () => {
  it(
    'every command answers --help with its own usage (exit 0), changing nothing',
    async () => {
      for (const command of COMMANDS) {
        const r = await ctl(host.url, command, '--help');
        expect(r, command).toMatchObject({ code: 0, stderr: '' });
        expect(r.stdout, command).toMatch(new RegExp(`^Usage: balloonctl ${command} `));
      }
      expect((await ctl(host.url, 'help', 'controlvm')).stdout).toMatch(/^Usage: balloonctl controlvm /);
      // With a VM name too: help, not a lookup of '--help' or a change.
      expect((await ctl(host.url, 'controlvm', 'cli', 'guestmemoryballoon', '10', '--help')).stdout).toMatch(/^Usage: balloonctl controlvm/);
      expect((await ctl(host.url, 'unregistervm', 'cli', '--help')).code).toBe(0);
      expect((await ctlJson<VmView>(host.url, 'showvminfo', 'cli')).name).toBe('cli');
      const overview = await ctl(host.url, '--help');
      for (const command of COMMANDS) expect(overview.stdout).toContain(`  ${command}`);
    },
    MANY_RUNS_MS,
  );

  it('--version prints the version', async () => {
    const r = await ctl(host.url, '--version');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

describe('balloonctl exit codes and errors', () => {
  it(
    'exits 2 for a wrong command line, naming the help to read',
    async () => {
      const cases: string[][] = [
        ['frobnicate'],
        ['showvminfo'],
        ['showvminfo', 'a', 'b'],
        ['controlvm', 'cli', 'poweron'],
        ['controlvm', 'cli', 'guestmemoryballoon', 'lots'],
        ['controlvm', 'cli', 'guestmemoryballoon', '10', '--bogus'],
        ['modifyvm', 'cli'],
        ['modifyvm', 'cli', '--pagefusion', 'maybe'],
        ['createvm', '--name', 'x'],
        ['metrics', 'frob'],
        ['list', 'things'],
        ['--host'],
        ['help', 'frobnicate'],
      ];
      for (const args of cases) {
        const r = await ctl(host.url, ...args);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
        expect(r.stderr, args.join(' ')).toMatch(/^balloonctl: error: .*\(see balloonctl (\w+ )?--help\)\n$/);
        expect(r.stdout).toBe('');
      }
      expect((await ctl(host.url, 'showvminfo')).stderr).toMatch(/see balloonctl showvminfo --help/);
    },
    MANY_RUNS_MS,
  );

  it(
    'exits 1 when the operation fails; with --json the error is JSON with the API code',
    async () => {
      const ghost = await ctl(host.url, 'showvminfo', 'ghost');
      expect(ghost.code).toBe(1);
      const ghostJson = await ctl(host.url, 'showvminfo', 'ghost', '--json');
      expect(ghostJson).toMatchObject({ code: 1, stdout: '' });
      expect(JSON.parse(ghostJson.stderr)).toEqual({ error: { code: 'not_found', message: "Could not find a registered machine named 'ghost'" } });
      const off = await ctl(host.url, 'controlvm', 'cli', 'guestmemoryballoon', '10', '--json');
      expect(JSON.parse(off.stderr).error.code).toBe('not_running');
      const usage = await ctl(host.url, 'controlvm', 'cli', 'guestmemoryballoon', 'x', '--json');
      expect(usage.code).toBe(2);
      expect(JSON.parse(usage.stderr)).toEqual({ error: { code: 'usage', message: expect.stringMatching(/guestmemoryballoon needs a whole number of MiB/) } });
      const range = await ctl(host.url, 'modifyvm', 'cli', '--memory-weight', '0', '--json');
      expect(range.code).toBe(1);
      expect(JSON.parse(range.stderr).error.code).toBe('out_of_range');
      const dead = await ctl('http://127.0.0.1:1', 'list', 'vms', '--json');
      expect(dead.code).toBe(1);
      expect(JSON.parse(dead.stderr).error.code).toBe('unreachable');
    },
    MANY_RUNS_MS,
  );
});

describe('balloonctl output', () => {
  it(
    'balloonMaxMib is null until set, and --balloon-max none unsets it',
    async () => {
      expect((await ctlJson<VmView>(host.url, 'showvminfo', 'cli')).balloonMaxMib).toBeNull();
      expect((await ctlJson<VmView>(host.url, 'modifyvm', 'cli', '--balloon-max', '100')).balloonMaxMib).toBe(100);
      expect((await ctl(host.url, 'showvminfo', 'cli')).stdout).toMatch(/^Balloon max: +100 MiB$/m);
      expect((await ctlJson<VmView>(host.url, 'modifyvm', 'cli', '--balloon-max', 'none')).balloonMaxMib).toBeNull();
      expect((await ctl(host.url, 'showvminfo', 'cli')).stdout).toMatch(/^Balloon max: +not set/m);
    },
    MANY_RUNS_MS,
  );

  it(
    'metrics list names every metric; metrics query --json has its unit in the field name',
    async () => {
      const list = await ctl(host.url, 'metrics', 'list');
      expect(list.code).toBe(0);
      const names = list.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(/\s+/)[0]);
      expect(names).toEqual([
        'Guest/RAM/Usage/Total',
        'Guest/RAM/Usage/Free',
        'Guest/RAM/Usage/Balloon',
        'Guest/RAM/Usage/Shared',
        'Guest/RAM/Usage/Cache',
        'RAM/VMM/Used',
        'RAM/VMM/Free',
        'RAM/VMM/Ballooned',
        'RAM/VMM/Shared',
      ]);
      const listJson = await ctlJson<Array<{ metric: string; object: string }>>(host.url, 'metrics', 'list');
      expect(listJson.map((m) => m.metric)).toEqual(names);
      const rows = await ctlJson<Array<Record<string, unknown>>>(host.url, 'metrics', 'query', 'host');
      expect(rows.length).toBe(4);
      for (const row of rows) expect(Object.keys(row).sort()).toEqual(['metric', 'object', 'valueKib']);
      expect(rows.find((r) => r.metric === 'RAM/VMM/Free')?.valueKib).toBe(1024 * 1024);
      expect((await ctl(host.url, 'metrics', 'query', 'host', 'RAM/VMM/Free')).stdout).toMatch(/^host +RAM\/VMM\/Free +1048576 kB$/m);
    },
    MANY_RUNS_MS,
  );

  it(
    'showvminfo --machinereadable is key="value" lines a shell can read, matching --json',
    async () => {
      const agent = spawnAgent({ url: host.url, name: 'cli', memoryMib: 256, floorMib: 16 });
      await waitFor(async () => (await ctlJson<VmView>(host.url, 'showvminfo', 'cli')).state === 'running', { what: 'cli to run', timeoutMs: 20_000 });
      expect((await ctl(host.url, 'controlvm', 'cli', 'guestmemoryballoon', '32', '--wait')).code).toBe(0);
      const json = await ctlJson<VmView>(host.url, 'showvminfo', 'cli');
      const r = await ctl(host.url, 'showvminfo', 'cli', '--machinereadable');
      expect(r).toMatchObject({ code: 0, stderr: '' });
      const pairs = new Map<string, string>();
      for (const line of r.stdout.trim().split('\n')) {
        const m = /^([A-Za-z][A-Za-z0-9]*)=("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?)$/.exec(line);
        expect(m, line).not.toBeNull();
        pairs.set(m![1]!, m![2]!);
      }
      expect(pairs.get('name')).toBe('"cli"');
      expect(pairs.get('VMState')).toBe('"running"');
      expect(pairs.get('memory')).toBe('256');
      expect(pairs.get('balloonTargetMib')).toBe('32');
      expect(pairs.get('balloonActualMib')).toBe(String(json.balloon!.actualMib));
      expect(pairs.get('pid')).toBe(String(agent.pid));
      // The human form says the pinned state once (nothing extra when all is pinned).
      const human = await ctl(host.url, 'showvminfo', 'cli');
      const actualLine = /^Balloon actual:.*$/m.exec(human.stdout)![0];
      expect(actualLine).not.toMatch(/locked.*locked/);
      if (json.balloon!.lock === 'locked' && json.balloon!.lockedMib === 32) expect(actualLine).toMatch(/^Balloon actual: +32 MiB$/);
      await agent.stop();
    },
    MANY_RUNS_MS,
  );
});
