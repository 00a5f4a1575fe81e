// The hard limits every target must respect, for the engine's input: the
// rules themselves are the pool's (../pool/balloon-rules.ts), called here.
import { autoBalloonCapMib, heldMib } from '../pool/balloon-rules.js';
import type { PolicyVmInput } from './types.js';

export { heldMib };

/** The largest balloon the policy may set for this VM: the pool's autoBalloonCapMib, for the engine's input. */
export function policyBalloonCapMib(vm: Pick<PolicyVmInput, 'memoryMib' | 'settings'>): number {
  return autoBalloonCapMib({ memoryMib: vm.memoryMib, memoryMinMib: vm.settings.memoryMinMib, balloonMaxMib: vm.settings.balloonMaxMib });
}

/**
 * Pool quota a new target costs the moment it is granted: a deflate below the
 * pinned size raises what the VM holds at once. Never negative: what an inflate
 * frees is counted only once the guest has pinned it (next round's free quota).
 */
export function grantCostMib(targetMib: number, actualMib: number, newTargetMib: number): number {
  return Math.max(0, Math.min(targetMib, actualMib) - Math.min(newTargetMib, actualMib));
}
