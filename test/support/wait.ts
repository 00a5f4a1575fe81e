// Polling with a deadline: end-to-end tests wait for a condition, never sleep
// for a fixed time.

/** Options of waitFor. */
export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Said in the error when the deadline passes. */
  what?: string;
}

/**
 * Calls `probe` until it returns a value other than undefined/false, or the
 * deadline passes (then throws, naming `what` and the last value or error).
 */
export async function waitFor<T>(probe: () => T | Promise<T>, opts: WaitOptions = {}): Promise<Exclude<T, false | undefined | null>> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const intervalMs = opts.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false && value !== null) return value as Exclude<T, false | undefined | null>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'} (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
