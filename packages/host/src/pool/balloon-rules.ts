// VirtualBox's balloon rules as plain arithmetic, shared by the pool, the
// admin API and (later) the policy engine. Pure: no I/O.

/**
 * The largest balloon a VM of `memoryMib` may be given: VirtualBox refuses a
 * balloon of 90 % of the VM's RAM or more, so this is the largest integer
 * MiB strictly below 90 %.
 */
export function maxBalloonMib(memoryMib: number): number {
  if (memoryMib <= 0) return 0;
  // target * 10 < memory * 9  <=>  target <= floor((9 * memory - 1) / 10)
  return Math.floor((9 * memoryMib - 1) / 10);
}

/** Why `targetMib` is not a valid balloon for a VM of `memoryMib`, or null. */
export function balloonTargetProblem(targetMib: number, memoryMib: number, vmName: string): string | null {
  if (!Number.isSafeInteger(targetMib) || targetMib < 0) {
    return `the balloon size must be a whole number of MiB, 0 or more (got ${String(targetMib)})`;
  }
  const limitMib = maxBalloonMib(memoryMib);
  if (targetMib > limitMib) {
    return `a balloon of ${targetMib} MiB is 90 % or more of the memory of VM '${vmName}' (${memoryMib} MiB): the largest allowed is ${limitMib} MiB`;
  }
  return null;
}

/** What a running VM holds of the pool: memory - min(target, actual). */
export function heldMib(memoryMib: number, targetMib: number, actualMib: number): number {
  return memoryMib - Math.min(targetMib, actualMib);
}
