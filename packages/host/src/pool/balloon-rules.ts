// VirtualBox's balloon rules as plain arithmetic: the one place for the
// balloon caps, used by the pool, the service (controlvm, modifyvm, admission)
// and the policy engine alike. Pure: no I/O.

/**
 * The largest balloon a VM of `memoryMib` may be given: VirtualBox refuses a
 * balloon of 90 % of the VM's RAM or more, so this is the largest integer
 * MiB strictly below 90 %.
 */
export function balloonLimitMib(memoryMib: number): number {
  if (memoryMib <= 0) return 0;
  // target * 10 < memory * 9  <=>  target <= floor((9 * memory - 1) / 10)
  return Math.floor((9 * memoryMib - 1) / 10);
}

/** Why `targetMib` is not a valid balloon for a VM of `memoryMib`, or null. */
export function balloonTargetProblem(targetMib: number, memoryMib: number, vmName: string): string | null {
  if (!Number.isSafeInteger(targetMib) || targetMib < 0) {
    return `the balloon size must be a whole number of MiB, 0 or more (got ${String(targetMib)})`;
  }
  const limitMib = balloonLimitMib(memoryMib);
  if (targetMib > limitMib) {
    return `a balloon of ${targetMib} MiB is 90 % or more of the memory of VM '${vmName}' (${memoryMib} MiB): the largest allowed is ${limitMib} MiB`;
  }
  return null;
}

/** What a running VM holds of the pool: memory - min(target, actual). */
export function heldMib(memoryMib: number, targetMib: number, actualMib: number): number {
  return memoryMib - Math.min(targetMib, actualMib);
}

/** The settings that bound the balloon the host sets on its own (reclaim, policy). */
export interface BalloonCapSettings {
  memoryMib: number;
  /** What the guest always keeps: the host never sets a balloon past memory - min. */
  memoryMinMib: number;
  /** Largest balloon the host may set on its own; 0 means not set (only the 90 % rule). */
  balloonMaxMib: number;
}

/**
 * The largest balloon the host may set on its own (a reclaim, the automatic
 * policy): the 90 % rule, memory - memoryMin, and balloonMax when set. An
 * operator's controlvm is bounded by balloonLimitMib alone.
 */
export function autoBalloonCapMib(vm: BalloonCapSettings): number {
  let cap = Math.min(balloonLimitMib(vm.memoryMib), vm.memoryMib - vm.memoryMinMib);
  if (vm.balloonMaxMib > 0) cap = Math.min(cap, vm.balloonMaxMib);
  return Math.max(0, Math.floor(cap));
}

/**
 * The floor the host gives a guest in Welcome: MiB of its domain's available
 * memory that the agent never inflates into, and below which it deflates on
 * its own (deflate on pressure). The larger of 64 MiB and 5 % of the VM, as
 * the agent's own default is of its domain.
 */
export function guestFloorMib(memoryMib: number): number {
  return Math.max(64, Math.ceil(memoryMib * 0.05));
}

/**
 * How far above a guest's floor a reclaim stops: the guest's available memory
 * moves by a few MiB on its own (its agent, caches), and a balloon parked at
 * the floor would give memory back in 1 MiB steps, pushing the pool over its
 * size. The larger of 8 MiB and 2 % of the VM.
 */
export function floorMarginMib(memoryMib: number): number {
  return Math.max(8, Math.ceil(memoryMib * 0.02));
}
