// Deliberate garbage collection, in plain JavaScript so that the main
// thread and the worker threads share one copy. V8 frees a
// SharedArrayBuffer's backing store (and unmaps it) only when a GC finds it
// dead, and an idle agent may never collect: after a deflate we collect on
// purpose so that the address space and V8's external-memory account follow
// the balloon down.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect;

/** A function that runs a full GC of this thread's isolate, or null when the runtime refuses. */
export function fullGc() {
  if (collect !== undefined) return collect;
  const existing = globalThis.gc;
  if (typeof existing === 'function') return (collect = existing);
  try {
    // Only the flag: V8 reads it when a new context is made, so the
    // embedding program's own global scope stays as it was (no global gc).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc');
    collect = typeof gc === 'function' ? gc : null;
  } catch {
    collect = null;
  }
  return collect;
}
