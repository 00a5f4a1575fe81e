// Types of ./gc.mjs (plain JS).

/** A function that runs a full GC of this thread's isolate, or null when the runtime refuses. */
export function fullGc(): (() => void) | null;
