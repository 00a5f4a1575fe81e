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
    parentPort.postMessage({ id, done: 0, lockErrno: 0 });
    return;
  }
  const failing = (fault === 'throw' || fault === 'exit' || fault === 'silent') && takeFault();
  if (failing && fault === 'silent') return;
  const { board } = msg;
  const n = msg.jobs.length;
  // Claims chunks as touch-worker.mjs does; a failing instance fails
  // half-way: it claims a block of half the job, touches it, and dies before
  // marking any of it committed (what the engine must hand back).
  let done = 0;
  if (failing) {
    const from = Atomics.add(board, 0, Math.ceil(n / 2));
    for (let i = from; i < Math.min(n, from + Math.ceil(n / 2)); i++) touchPages(msg.jobs[i].sab, msg.jobs[i].seed, pageWords);
    if (fault === 'exit') process.exit(3);
    throw new Error('fixture: this worker crashes mid-job');
  }
  while (Atomics.load(control, 0) === epoch) {
    const i = Atomics.add(board, 0, 1);
    if (i >= n) break;
    touchPages(msg.jobs[i].sab, msg.jobs[i].seed, pageWords);
    Atomics.store(board, 1 + i, 1);
    done++;
  }
  msg.jobs = null;
  parentPort.postMessage({ id, done, lockErrno: 0 });
});
