// The hard limits every target must respect, in one place so the engine, the
// baselines' pool gate and the property tests all use the same arithmetic.
import type { PolicyVmInput } from './types.js';

/**
 * VirtualBox refuses a balloon of 90 % of memory or more: the largest legal
 * balloon is ceil(0.9 × memory) − 1 (integer MiB).
 */
export function ninetyPercentRuleMaxMib(memoryMib: number): number {
  return Math.max(0, Math.ceil(0.9 * memoryMib) - 1);
}

/** The largest balloon the policy may set for this VM: min of balloon max, memory − min, and the 90 % rule. */
export function maxBalloonMib(vm: Pick<PolicyVmInput, 'memoryMib' | 'settings'>): number {
  const byMinimum = vm.memoryMib - vm.settings.memoryMinMib;
  return Math.max(0, Math.floor(Math.min(vm.settings.balloonMaxMib, byMinimum, ninetyPercentRuleMaxMib(vm.memoryMib))));
}

/** What a running VM holds of the pool: memory − min(target, actual). */
export function heldMib(memoryMib: number, targetMib: number, actualMib: number): number {
  return memoryMib - Math.min(targetMib, actualMib);
}

/**
 * Pool quota a new target costs the moment it is granted: a deflate below the
 * pinned size raises what the VM holds at once. Never negative: what an inflate
 * frees is counted only once the guest has pinned it (next round's free quota).
 */
export function grantCostMib(targetMib: number, actualMib: number, newTargetMib: number): number {
  return Math.max(0, Math.min(targetMib, actualMib) - Math.min(newTargetMib, actualMib));
}
