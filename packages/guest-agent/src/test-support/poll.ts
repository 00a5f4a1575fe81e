// Polling with a deadline for the agent's tests: they wait for a condition,
// never sleep for a fixed time.

/**
 * Calls `probe` every `intervalMs` until it returns something other than
 * undefined, null or false, and returns that; throws naming `what` once
 * `timeoutMs` has passed.
 */
export async function poll<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 20_000, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
