// Deliberate garbage collection (plain JavaScript from when worker threads
// shared it). V8 frees a
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
    // V8 reads the flag when a context is made: one context of our own gets
    // `gc`, and the flag is turned off again at once, so the embedding
    // program's globals and later contexts stay as they were.
    setFlagsFromString('--expose-gc');
    try {
      const gc = runInNewContext('gc');
      collect = typeof gc === 'function' ? gc : null;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  } catch {
    collect = null;
  }
  return collect;
}
