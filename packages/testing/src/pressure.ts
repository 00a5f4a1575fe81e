// withMemoryPressure: run a piece of a test while a balloon holds part of the
// guest's memory, and give the memory back however the piece ends.
import type { TestGuest } from './guest.js';

/**
 * Inflates `guest`'s balloon to `balloonMib`, runs `fn`, then puts the balloon
 * back where it was, even when `fn` throws. Resolves with what `fn` returns;
 * rejects as `guest.balloon()` does when the guest cannot give that much.
 */
export async function withMemoryPressure<T>(guest: TestGuest, balloonMib: number, fn: () => T | Promise<T>): Promise<T> {
  const before = (await guest.info()).balloon?.targetMib ?? 0;
  await guest.balloon(balloonMib);
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    // The test's own failure is the one to report; still give the memory back.
    await guest.balloon(before).catch(() => undefined);
    throw err;
  }
  await guest.balloon(before);
  return result;
}
