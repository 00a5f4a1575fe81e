// A cgroup under the host's pool cgroup that the host did not make (another
// tool's, or a guest of a host with another data directory) with a process in
// it and no limit: the host leaves it alone, but the pool cgroup's limit
// cannot bound the children's sum then, so it refuses to start. The refusal
// must name the cgroup and say what to do, and nothing of it is touched.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cgroupV1SkipReason, makeV1Cgroup, type TestCgroup } from './support/cgroup-v1.js';
import { cleanUp } from './support/cleanup.js';
import { tempDataDir } from './support/host.js';
import { startTestHost, testGuests } from './support/in-process-host.js';
import { waitFor } from './support/wait.js';

const skip = cgroupV1SkipReason();
const PARENT = `memballoon-qa2-stranger-${process.pid}`;
let data: ReturnType<typeof tempDataDir>;
let stranger: TestCgroup | undefined;
let sleeper: ReturnType<typeof spawn> | undefined;

beforeAll(() => {
  data = tempDataDir();
});
afterAll(async () => {
  await cleanUp(
    async () => {
      if (sleeper && sleeper.exitCode === null && sleeper.signalCode === null) {
        const gone = new Promise((r) => sleeper!.once('exit', r));
        sleeper.kill('SIGKILL');
        await gone;
      }
    },
    () => stranger?.remove(),
    () => data.remove(),
  );
});

it.skipIf(skip !== '')(
  `a stranger cgroup with a process and no limit under the pool cgroup: the host refuses to start naming it, and leaves it as it was${skip ? ` (${skip})` : ''}`,
  async () => {
    stranger = makeV1Cgroup(PARENT, 'stranger');
    sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
    writeFileSync(join(stranger.dir, 'cgroup.procs'), String(sleeper.pid));
    await waitFor(() => readFileSync(join(stranger!.dir, 'cgroup.procs'), 'utf8').trim() === String(sleeper!.pid), {
      what: 'the sleeper in the stranger cgroup',
    });
    const limitBefore = readFileSync(join(stranger.dir, 'memory.limit_in_bytes'), 'utf8');

    const err = await startTestHost({ dataDir: data.dir, poolSizeMib: 512, guests: testGuests({ cgroupParent: PARENT, poolCgroup: true }) }).then(
      async (h) => {
        await h.close();
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    expect(err, 'the host started').toBeDefined();
    expect(err!.message).toContain('stranger');
    expect(err!.message).toMatch(/give each a limit, or move it out/);
    expect(readFileSync(join(stranger.dir, 'cgroup.procs'), 'utf8').trim()).toBe(String(sleeper.pid));
    expect(readFileSync(join(stranger.dir, 'memory.limit_in_bytes'), 'utf8')).toBe(limitBefore);
  },
);
