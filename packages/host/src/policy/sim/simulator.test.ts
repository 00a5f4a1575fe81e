import { describe, expect, it } from 'vitest';
import { momDefaultPolicy } from '../baselines/momDefault.js';
import { vboxBalloonCtrlPolicy } from '../baselines/vboxBalloonCtrl.js';
import { ourPolicy } from '../engine.js';
import { createPrng } from './prng.js';
import { runComparison } from './run.js';
import { standardScenarios } from './scenarios.js';
import { simulate } from './simulator.js';

const scenario = (name: string, rounds = 1200) => standardScenarios(rounds).find((s) => s.name === name)!;

describe('simulator', () => {
  it('is deterministic for a seed', () => {
    expect(createPrng(3).next()).toBe(createPrng(3).next());
    const a = simulate(scenario('mixed', 300), ourPolicy(), 11);
    const b = simulate(scenario('mixed', 300), ourPolicy(), 11);
    expect(a).toEqual(b);
  });

  it('counts OOM kills when a balloon leaves a growing guest no room', () => {
    // A fixed big balloon (a policy that never moves) starves the grower.
    const frozen = {
      name: 'frozen',
      initialState: () => null,
      step: (s: null) => ({ state: s, decision: { changes: [], poolFreeAfterMib: 0, unmetDemandMib: 0 } }),
    };
    const result = simulate(scenario('growing', 1500), frozen, 1);
    expect(result.oomEvents).toBeGreaterThan(0);
  });

  it('our engine breaks no rule in any standard scenario', () => {
    for (const s of standardScenarios(1500)) {
      const result = simulate(s, ourPolicy(), 5);
      expect(result.invariantViolations, s.name).toBe(0);
      expect(result.refusedChanges, s.name).toBe(0);
      expect(result.poolFreeMinMib, s.name).toBeGreaterThanOrEqual(0);
    }
  });

  it('our engine oscillates less than both baselines and spares the spiky guests', () => {
    const ours = simulate(scenario('spiky'), ourPolicy(), 3);
    const vbox = simulate(scenario('spiky'), vboxBalloonCtrlPolicy(), 3);
    const mom = simulate(scenario('spiky'), momDefaultPolicy(), 3);
    expect(ours.directionChangesMeanPerVm).toBeLessThan(vbox.directionChangesMeanPerVm / 10);
    expect(ours.directionChangesMeanPerVm).toBeLessThan(mom.directionChangesMeanPerVm / 10);
    expect(ours.oomEvents).toBeLessThan(vbox.oomEvents);
  });

  it('does not let a lying guest keep more than its share', () => {
    const result = simulate(scenario('lying', 3000), ourPolicy(), 7);
    const liar = result.givenMibPerWeight.liar!;
    const honest = result.givenMibPerWeight.grow1!;
    expect(liar / honest).toBeLessThan(1.25);
    expect(result.fairnessJain).toBeGreaterThan(0.95);
  });

  it('runs the whole comparison', () => {
    const results = runComparison(7, 200);
    expect(results).toHaveLength(standardScenarios().length * 4);
    expect(new Set(results.map((r) => r.engine))).toEqual(new Set(['memballoon', 'VBoxBalloonCtrl', 'MOM default', 'oracle']));
  });
});
