// Polling with a deadline for the agent's tests: the project's one helper
// (test/support/wait.ts), in the argument order these tests use.
import { waitFor } from '@memballoon/e2e/wait';

/**
 * Calls `probe` every `intervalMs` until it returns something other than
 * undefined, null or false, and returns that; throws naming `what` once
 * `timeoutMs` has passed.
 */
export function poll<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 20_000, intervalMs = 10): Promise<T> {
  return waitFor(probe, { what, timeoutMs, intervalMs }) as Promise<T>;
}
