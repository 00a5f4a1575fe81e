// Guest records (<data-dir>/guests/NAME.json) the host finds at start-up that
// it must not act on: the record of a process-mode guest whose agent died
// long ago, its pid since taken by an unrelated process that leads its own
// process group (the host signalled -pid: that whole group was killed), and a
// record of a startvm guest naming a cgroup outside the host's parent (every
// process in it would be killed and the cgroup removed). The "unrelated
// process" here is the test's own detached sleep.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HostHandle } from '@memballoon/host';
import { cgroupV1SkipReason, makeV1Cgroup, type TestCgroup } from './support/cgroup-v1.js';
import { cleanUp } from './support/cleanup.js';
import { tempDataDir } from './support/host.js';
import { startTestHost, testGuests } from './support/in-process-host.js';
import { waitFor } from './support/wait.js';

const skipCgroup = cgroupV1SkipReason();
let data: ReturnType<typeof tempDataDir>;
let host: HostHandle | undefined;
const sleepers: ChildProcess[] = [];
let elsewhere: TestCgroup | undefined;

function sleeper(): ChildProcess {
  // detached: it leads its own process group, as the reused pid's owner would.
  const child = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
  sleepers.push(child);
  return child;
}
const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;
/** The kernel's word, not Node's exit event (which may lag): the process exists and is no zombie. */
function runs(c: ChildProcess): boolean {
  try {
    const stat = readFileSync(`/proc/${c.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

beforeAll(() => {
  data = tempDataDir();
  mkdirSync(join(data.dir, 'guests'), { recursive: true, mode: 0o700 });
});
afterAll(async () => {
  await cleanUp(
    () => host?.close(),
    async () => {
      for (const c of sleepers) {
        if (!alive(c)) continue;
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await gone;
      }
    },
    () => elsewhere?.remove(),
    () => data.remove(),
  );
});

it('a dead guest’s record whose pid now leads an unrelated process group, and one naming a cgroup outside the host’s parent: the host signals nobody', async () => {
  const bystander = sleeper();
  const record = {
    name: 'long-gone',
    kind: 'startvm',
    cgroupDir: null,
    agentPid: bystander.pid,
    agentStartTicks: 1,
    launchTokenHash: 'x',
    logFile: '/dev/null',
    command: ['sleep', '1'],
    startedAtMs: 0,
  };
  writeFileSync(join(data.dir, 'guests', 'long-gone.json'), JSON.stringify(record), { mode: 0o600 });
  let elsewhereSleeper: ChildProcess | undefined;
  if (skipCgroup === '') {
    elsewhere = makeV1Cgroup(`memballoon-qa2-records-${process.pid}`, 'elsewhere');
    elsewhereSleeper = sleeper();
    writeFileSync(join(elsewhere.dir, 'cgroup.procs'), String(elsewhereSleeper.pid));
    const outside = { ...record, name: 'outside', cgroupDir: elsewhere.dir, agentPid: 999_999_999 };
    writeFileSync(join(data.dir, 'guests', 'outside.json'), JSON.stringify(outside), { mode: 0o600 });
  }
  host = await startTestHost({
    dataDir: data.dir,
    poolSizeMib: 512,
    guests: testGuests({ cgroupParent: `memballoon-qa2-records-parent-${process.pid}`, forceProcessMode: skipCgroup !== '', poweroffGraceMs: 0 }),
  });
  // The host's recovery is done once startHost resolves; the bystanders must still run.
  await waitFor(() => host!.service.listVms(false) !== undefined, { what: 'the host' });
  expect(runs(bystander), 'the bystander group was signalled').toBe(true);
  if (elsewhereSleeper) expect(runs(elsewhereSleeper), 'a process of a cgroup outside the parent was signalled').toBe(true);
  await host.close();
  host = undefined;
});
