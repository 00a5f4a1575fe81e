// Worker thread that commits balloon chunks: plain JavaScript so it loads
// the same under tsx, vitest and plain node. It writes one distinct non-zero
// word per page (faulting the page in), which is the cheapest way to commit
// memory from JS; the main thread does the rest of each step in parallel.
import { parentPort } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc = null;

parentPort.on('message', (msg) => {
  if (msg.gc) {
    // The clones of deflated chunks keep their backing stores alive until
    // this isolate collects too; the main thread asks after a deflate.
    if (!gc) {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc');
    }
    gc();
    return;
  }
  const { id, jobs, pageWords } = msg;
  for (const job of jobs) {
    const words = new Uint32Array(job.sab);
    let value = job.seed;
    for (let i = 0; i < words.length; i += pageWords) words[i] = value++;
  }
  msg.jobs = null;
  parentPort.postMessage({ id });
});
