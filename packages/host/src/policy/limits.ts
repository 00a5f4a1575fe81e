// The hard limits every target must respect, in one place so the engine, the
// baselines' pool gate and the property tests all use the same arithmetic.
import { heldMib, maxBalloonMib as poolMaxBalloonMib } from '../pool/balloon-rules.js';
import type { PolicyVmInput } from './types.js';

export { heldMib };

/**
 * VirtualBox refuses a balloon of 90 % of memory or more: the largest legal
 * balloon, in integer MiB. The pool's rule, so the host and the policy can
 * never disagree about it.
 */
export function ninetyPercentRuleMaxMib(memoryMib: number): number {
  return poolMaxBalloonMib(memoryMib);
}

/** The largest balloon the policy may set for this VM: min of balloon max, memory − min, and the 90 % rule. */
export function maxBalloonMib(vm: Pick<PolicyVmInput, 'memoryMib' | 'settings'>): number {
  const byMinimum = vm.memoryMib - vm.settings.memoryMinMib;
  return Math.max(0, Math.floor(Math.min(vm.settings.balloonMaxMib, byMinimum, ninetyPercentRuleMaxMib(vm.memoryMib))));
}


/**
 * Pool quota a new target costs the moment it is granted: a deflate below the
 * pinned size raises what the VM holds at once. Never negative: what an inflate
 * frees is counted only once the guest has pinned it (next round's free quota).
 */
export function grantCostMib(targetMib: number, actualMib: number, newTargetMib: number): number {
  return Math.max(0, Math.min(targetMib, actualMib) - Math.min(newTargetMib, actualMib));
}
