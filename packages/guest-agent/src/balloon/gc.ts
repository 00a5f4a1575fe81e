// Deliberate garbage collection. V8 frees a SharedArrayBuffer's backing
// store (and unmaps it) only when a GC finds it dead, and an idle agent may
// never collect: after a deflate we collect on purpose so that the address
// space and V8's external-memory account follow the balloon down.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | null | undefined;

/** A function that runs a full GC, or null when the runtime refuses. */
export function fullGc(): (() => void) | null {
  if (collect !== undefined) return collect;
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return (collect = existing);
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    collect = typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    collect = null;
  }
  return collect;
}
