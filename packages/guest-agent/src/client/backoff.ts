// Reconnect delays: exponential backoff with jitter, so that many agents
// dropped by one host restart do not all knock again at the same instant.

/** Backoff settings, in ms. */
export interface BackoffOptions {
  /** Delay before the first retry (default 250). */
  baseMs?: number;
  /** Largest delay (default 30 000). */
  maxMs?: number;
}

/**
 * The delay before retry number `attempt` (1, 2, …): base·2^(attempt-1),
 * capped, then "equal jitter" (half fixed, half random) so that it never
 * collapses to zero. A host's retryAfterMs hint is a lower bound.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}, retryAfterMs = 0, random: () => number = Math.random): number {
  const baseMs = options.baseMs ?? 250;
  const maxMs = options.maxMs ?? 30_000;
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  const jittered = exp / 2 + random() * (exp / 2);
  return Math.max(Math.round(jittered), Math.min(retryAfterMs, maxMs * 4));
}
