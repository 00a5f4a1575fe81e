// Tests only: a balloon worker that fails on purpose, speaking the same
// messages as touch-worker.mjs. It commits pages like the real one (touch,
// no mlock) until the shared fault budget says to fail, then fails in the
// way workerData.fault names:
//   'throw'  — an uncaught exception half-way through a job (a crash);
//   'exit'   — process.exit half-way through a job (a worker killed mid-job);
//   'silent' — never answers the job (stuck; only the watchdog notices);
//   'load'   — fails while loading, before it could take any job;
//   'idle'   — exits when asked to collect garbage (after a deflate), idle.
// workerData.faults (Int32Array on a SharedArrayBuffer, [count]) is shared by
// every instance, so "fail the first N times" spans restarted workers.
import { parentPort, workerData } from 'node:worker_threads';
import { touchPages } from './pages.mjs';

const { control, fault, faults } = workerData;

/** Takes one fault from the shared budget; true when this instance must fail. */
function takeFault() {
  return Atomics.sub(faults, 0, 1) > 0;
}

if (fault === 'load' && takeFault()) throw new Error('fixture: this worker fails while loading');

parentPort.on('message', (msg) => {
  if (msg.gc) {
    if (fault === 'idle' && takeFault()) process.exit(4);
    return;
  }
  const { id, epoch, pageWords } = msg;
  // The pool's start-up call (an empty job) is answered: faults are for real jobs.
  if (msg.jobs.length === 0) {
    parentPort.postMessage({ id, done: 0, locked: 0, lockErrno: 0 });
    return;
  }
  const failing = (fault === 'throw' || fault === 'exit' || fault === 'silent') && takeFault();
  if (failing && fault === 'silent') return;
  const failAt = failing ? Math.floor(msg.jobs.length / 2) : -1;
  let done = 0;
  for (const job of msg.jobs) {
    if (done === failAt) {
      if (fault === 'exit') process.exit(3);
      throw new Error('fixture: this worker crashes mid-job');
    }
    if (Atomics.load(control, 0) !== epoch) break;
    touchPages(job.sab, job.seed, pageWords);
    done++;
  }
  msg.jobs = null;
  parentPort.postMessage({ id, done, locked: 0, lockErrno: 0 });
});
