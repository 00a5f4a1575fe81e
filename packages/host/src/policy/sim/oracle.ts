// The simulator's oracle: the best a balloon policy could do on a scenario if
// it knew each guest's true memory use of the coming round. It is not a
// policy a host can run (no host knows the future, and guests' reports are
// late, noisy or lies); the table shows it so that the real engines are
// measured against the best possible, not only against each other.
//
// Each round it gives every guest the balloon that leaves it just out of
// pressure (available ≥ the pressure line plus one MiB), as large as the
// settings allow; when the pool cannot cover that, the missing memory is
// taken, still short of an OOM kill, from as few guests as possible (the
// ones with the most room first). Inflates are issued before deflates, and a
// deflate the pool cannot fund yet waits for a later round, as the pool gate
// would make any policy wait.
import { grantCostMib, policyBalloonCapMib } from '../limits.js';
import type { PolicyDecision, PolicyInput, PolicyTargetChange } from '../types.js';
import type { ForesightPolicy, SimPhysics } from './simulator.js';
import { DEFAULT_SIM_PHYSICS } from './simulator.js';

/** The oracle, for the simulator's physics (its pressure line). */
export function oraclePolicy(physics: SimPhysics = DEFAULT_SIM_PHYSICS): ForesightPolicy<null> {
  const step = (input: PolicyInput, demandMib: ReadonlyMap<string, number>): PolicyDecision => {
    const plan = input.vms.map((vm) => {
      const usedMib = demandMib.get(vm.name) ?? 0;
      const capMib = policyBalloonCapMib(vm);
      // Largest balloon without an OOM kill, and without pressure.
      const noOomMib = Math.max(0, Math.min(capMib, Math.floor(vm.memoryMib - usedMib) - 1));
      const noPressureMib = Math.max(0, Math.min(noOomMib, Math.floor(vm.memoryMib - usedMib - (physics.pressurePercent / 100) * vm.memoryMib) - 1));
      return { vm, balloonMib: noPressureMib, roomMib: noOomMib - noPressureMib };
    });
    // The pool needs Σ (memory − balloon) ≤ size at rest: find the missing MiB.
    let missingMib = plan.reduce((s, p) => s + p.vm.memoryMib - p.balloonMib, 0) - input.poolSizeMib;
    for (const p of [...plan].sort((a, b) => b.roomMib - a.roomMib)) {
      if (missingMib <= 0) break;
      const extraMib = Math.min(p.roomMib, missingMib);
      p.balloonMib += extraMib;
      missingMib -= extraMib;
    }
    // Inflates first (free to grant), then deflates while the free quota lasts.
    let freeMib = input.poolFreeMib;
    const changes: PolicyTargetChange[] = [];
    const ordered = [...plan].sort((a, b) => b.balloonMib - b.vm.targetMib - (a.balloonMib - a.vm.targetMib));
    for (const p of ordered) {
      if (p.balloonMib === p.vm.targetMib) continue;
      const costMib = grantCostMib(p.vm.targetMib, p.vm.actualMib, p.balloonMib);
      if (costMib > freeMib) continue;
      freeMib -= costMib;
      const inflate = p.balloonMib > p.vm.targetMib;
      changes.push({
        name: p.vm.name,
        previousTargetMib: p.vm.targetMib,
        targetMib: p.balloonMib,
        reason: inflate ? 'reclaim' : 'pressure',
        detail: `oracle: ${inflate ? 'the guest can spare it next round' : 'the guest needs it next round'}`,
      });
    }
    return { changes, poolFreeAfterMib: freeMib, unmetDemandMib: Math.max(0, missingMib) };
  };
  return {
    name: 'oracle',
    initialState: () => null,
    step: () => {
      throw new Error('the oracle needs to see the future: the simulator calls stepWithForesight');
    },
    stepWithForesight: (state, input, demandMib) => ({ state, decision: step(input, demandMib) }),
  };
}
