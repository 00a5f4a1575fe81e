// The rules a decision must never break, checked the same way by the
// simulator (counting violations) and by the property tests (failing).
import { heldMib, policyBalloonCapMib } from './limits.js';
import type { PolicyDecision, PolicyInput } from './types.js';

/**
 * Every way `decision` breaks the rules for `input`, as sentences; empty when
 * it keeps them. A target above the VM's largest legal balloon is allowed only
 * as a lowering of a target that was already above it; the pool may end short
 * only if it already was and the decision did not make it worse.
 */
export function decisionViolations(input: PolicyInput, decision: PolicyDecision): string[] {
  const problems: string[] = [];
  const byName = new Map(input.vms.map((vm) => [vm.name, vm]));
  const seen = new Set<string>();
  let heldBeforeMib = 0;
  let heldAfterMib = 0;
  const newTargets = new Map<string, number>();
  for (const c of decision.changes) {
    const vm = byName.get(c.name);
    if (vm === undefined) {
      problems.push(`${c.name}: not an auto VM of this round`);
      continue;
    }
    if (seen.has(c.name)) problems.push(`${c.name}: changed twice in one decision`);
    seen.add(c.name);
    if (!Number.isInteger(c.targetMib) || c.targetMib < 0) problems.push(`${c.name}: target ${c.targetMib} is not a whole MiB >= 0`);
    const maxMib = policyBalloonCapMib(vm);
    if (c.targetMib > maxMib && !(c.targetMib < vm.targetMib)) {
      problems.push(`${c.name}: target ${c.targetMib} MiB above its largest legal balloon ${maxMib} MiB`);
    }
    if (c.previousTargetMib !== vm.targetMib) problems.push(`${c.name}: previousTargetMib ${c.previousTargetMib} is not ${vm.targetMib}`);
    newTargets.set(c.name, c.targetMib);
  }
  for (const vm of input.vms) {
    heldBeforeMib += heldMib(vm.memoryMib, vm.targetMib, vm.actualMib);
    heldAfterMib += heldMib(vm.memoryMib, newTargets.get(vm.name) ?? vm.targetMib, vm.actualMib);
  }
  // poolFreeMib covers manual VMs too: what the auto VMs add must fit in it.
  const addedMib = heldAfterMib - heldBeforeMib;
  if (addedMib > 0 && addedMib > input.poolFreeMib) {
    problems.push(`pool: the decision grants ${addedMib} MiB with only ${input.poolFreeMib} MiB free`);
  }
  return problems;
}
