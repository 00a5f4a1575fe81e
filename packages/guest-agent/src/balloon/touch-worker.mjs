// Worker thread that commits balloon chunks: plain JavaScript so it loads
// the same under tsx, vitest and plain node. For each chunk it faults the
// pages in (madvise MADV_POPULATE_WRITE, in the kernel) and writes one
// distinct non-zero word per page. Between chunks it checks the shared
// epoch: a newer target cancels the rest of the job, so the balloon follows
// the latest target at chunk granularity.
//
// Pinning: the main thread has already marked the job's chunks locked on
// fault (mlock2 MLOCK_ONFAULT, `job.locked`), so the pages this thread faults
// in are pinned as they arrive. Why not mlock here, which pins and faults in
// at once: mlock takes the process's mmap lock for writing and then
// populates the chunk holding it for reading, so two workers calling it
// take turns (perf: the workers slept in rwsem_down_write_slowpath under
// do_mlock, and the process used 1.0 of 2 cores). Populating a range that is
// already marked takes the lock for reading only, which both threads hold at
// once. Where mlock2 is missing (old glibc or kernel) the main thread marks
// nothing and sends `lock`: this thread then mlocks each chunk itself.
import { parentPort, workerData } from 'node:worker_threads';
import { bindLibc } from '../native/libc-binding.mjs';
import { fullGc } from './gc.mjs';
import { touchPages } from './pages.mjs';

const control = workerData.control; // Int32Array: [epoch]
// Bound at start-up, not at the first job: what the binding costs is paid
// while the agent starts, not inside the first inflate.
const libc = bindLibc().fns;
const MADV_POPULATE_WRITE = 23;
/** Whether MADV_POPULATE_WRITE works here (Linux 5.14+): else touching faults the pages in. */
let populate = libc !== null;

/** Faults a chunk in for writing, in the kernel (faster than a fault per touched page). */
function populateChunk(bytes) {
  if (!populate) return;
  // EINVAL: an older kernel; anything else (ENOMEM): the touch that follows faults the pages in, or fails, as it would have.
  if (libc.madvise(bytes, bytes.byteLength, MADV_POPULATE_WRITE) !== 0 && libc.errno() === 22) populate = false;
}

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
    const bytes = new Uint8Array(job.sab);
    let pinned = job.locked === true;
    let populated = false;
    if (!pinned && lock) {
      // mlock faults the chunk in as it pins it.
      if (libc.mlock(bytes, bytes.byteLength) === 0) pinned = populated = true;
      else {
        lockErrno = libc.errno();
        lock = false;
      }
    }
    if (!populated) populateChunk(bytes);
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
