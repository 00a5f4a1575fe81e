// A child process that holds a BalloonEngine for the RSS tests: the parent
// measures this process's VmRSS/VmLck in /proc, away from the test runner's
// own allocations. Commands arrive over IPC; each answer carries the status.
import type { BalloonStatus } from '@memballoon/protocol';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { BalloonEngine } from './engine.js';
import { type CallFault, faultyCall } from './faulty-call.fixture.js';
import { fullGc } from './gc.mjs';

// `rss-child.fixture.ts error` (or throw, …): the fault-in call is the faulty
// fixture's, failing as often as the 'arm' command says, with 8 MiB chunks.
// `rss-child.fixture.ts fresh`: an engine as the agent makes it (default
// lanes), never warmed up by a target, for the first-inflate test.
// `rss-child.fixture.ts mlock`: pins as where mlock2 is missing (each call mlocks).
const mode = process.argv[2];
const fresh = mode === 'fresh';
const plainMlock = mode === 'mlock';
const fault = fresh || plainMlock ? undefined : (mode as CallFault | undefined);
const faults = new Int32Array(new SharedArrayBuffer(4));
/** This process's threads (/proc/self/task). */
const threadCount = (): number => readdirSync('/proc/self/task').length;
// libuv's thread pool is Node's own: started here, by an async read, so that
// what the engine adds on top of it can be counted.
await readFile('/proc/self/status');
const threadsBeforeEngine = threadCount();
const engine = new BalloonEngine({
  tuneMalloc: true,
  ...(fresh ? {} : { workerThreads: 1 }),
  ...(plainMlock ? { lockOnFault: false } : {}),
  ...(fault ? { faultInCall: faultyCall(fault, faults), chunkMib: 8 } : {}),
});
const problems: string[] = [];
engine.on('problem', (e) => problems.push(`${e.code}: ${e.message}`));
// Collect the fixture's own garbage (IPC messages) before each command, so
// the parent's RSS readings show the balloon, not the noise around it; never
// after one, which would hide a deflate that leaves its pages to a GC.
const gc = fullGc() ?? (() => {});

type Command =
  | { op: 'target'; targetMib: number }
  | { op: 'handOff'; handedOffMib: number }
  | { op: 'targetHandingOff'; targetMib: number }
  | { op: 'verify' }
  | { op: 'arm'; faults: number }
  | { op: 'threads' }
  | { op: 'close' };

process.on('message', (msg: Command) => {
  void (async () => {
    if (msg.op === 'target') {
      gc();
      engine.setTarget(msg.targetMib);
      const status = await engine.settled();
      process.send!({ op: 'target', status, problems: problems.splice(0) });
    } else if (msg.op === 'handOff') {
      gc();
      const status = engine.handOff(msg.handedOffMib);
      process.send!({ op: 'handOff', status, problems: problems.splice(0) });
    } else if (msg.op === 'targetHandingOff') {
      // As the host does with a managed guest: on every progress report of
      // the inflating balloon, hand off all it has pinned so far.
      gc();
      let whileInflatingMib = 0;
      const onProgress = (s: BalloonStatus) => {
        if (s.state !== 'inflating') return;
        whileInflatingMib = engine.handOff(s.actualMib).handedOffMib ?? 0;
      };
      engine.on('progress', onProgress);
      engine.setTarget(msg.targetMib);
      const status = await engine.settled();
      engine.off('progress', onProgress);
      process.send!({ op: 'targetHandingOff', status, whileInflatingMib, problems: problems.splice(0) });
    } else if (msg.op === 'arm') {
      Atomics.store(faults, 0, msg.faults);
      process.send!({ op: 'arm' });
    } else if (msg.op === 'threads') {
      process.send!({ op: 'threads', before: threadsBeforeEngine, now: threadCount() });
    } else if (msg.op === 'verify') {
      try {
        process.send!({ op: 'verify', pages: engine.verifyPages() });
      } catch (err) {
        process.send!({ op: 'verify', error: String(err) });
      }
    } else {
      await engine.close();
      process.send!({ op: 'close' }, undefined, {}, () => process.exit(0));
    }
  })();
});
if (fresh) {
  await engine.ready();
} else {
  // Warm up first: the code paths cost memory once, which is not the balloon's.
  engine.setTarget(2);
  await engine.settled();
  engine.setTarget(0);
  await engine.settled();
}
gc();
process.send!({ op: 'ready' });
