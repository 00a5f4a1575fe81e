// Worker thread that commits balloon chunks: plain JavaScript so it loads
// the same under tsx, vitest and plain node. For each chunk it pins the
// pages (mlock faults them all in, in the kernel, faster than touching from
// JS) and writes one distinct non-zero word per page. Between chunks it
// checks the shared epoch: a newer target cancels the rest of the job, so
// the balloon follows the latest target at chunk granularity.
import { parentPort, workerData } from 'node:worker_threads';
import { bindLibc } from '../native/libc-binding.mjs';
import { fullGc } from './gc.mjs';
import { touchPages } from './pages.mjs';

const control = workerData.control; // Int32Array: [epoch]
// Bound at start-up, not at the first job: what the binding costs is paid
// while the agent starts, not inside the first inflate.
const libc = workerData.lock ? bindLibc().fns : null;

parentPort.on('message', (msg) => {
  if (msg.gc) {
    // Our clones of deflated chunks keep their backing stores alive until
    // this isolate collects too; the main thread asks after a deflate.
    fullGc()?.();
    return;
  }
  const { id, epoch, pageWords, board } = msg;
  let lock = msg.lock && libc !== null;
  let done = 0;
  let lockErrno = 0;
  const n = msg.jobs.length;
  // Claim the next chunk nobody has taken (the other workers share the
  // list), commit it, mark it on the board: 1 committed, 2 also pinned.
  while (Atomics.load(control, 0) === epoch) {
    const i = Atomics.add(board, 0, 1);
    if (i >= n) break;
    const job = msg.jobs[i];
    let pinned = false;
    if (lock) {
      const bytes = new Uint8Array(job.sab);
      if (libc.mlock(bytes, bytes.byteLength) === 0) pinned = true;
      else {
        lockErrno = libc.errno();
        lock = false;
      }
    }
    touchPages(job.sab, job.seed, pageWords);
    Atomics.store(board, 1 + i, pinned ? 2 : 1);
    done++;
  }
  // Drop our references before answering, so a deflated chunk's memory
  // depends on the main thread alone.
  msg.jobs = null;
  parentPort.postMessage({ id, done, lockErrno });
});
// A job we cannot read would never be answered: fail loudly instead, so the
// engine sees the worker die at once (and releases and recommits the job)
// rather than waiting for its watchdog.
parentPort.on('messageerror', (err) => {
  throw err;
});
