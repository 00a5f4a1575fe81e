import { describe, expect, it } from 'vitest';
import { ourPolicy } from '../engine.js';
import { oraclePolicy } from './oracle.js';
import { standardScenarios } from './scenarios.js';
import { simulate } from './simulator.js';

describe('the oracle', () => {
  it('breaks no rule, never overdraws the pool, and kills no more than our engine in any scenario', () => {
    for (const s of standardScenarios(1200)) {
      const oracle = simulate(s, oraclePolicy(), 9);
      const ours = simulate(s, ourPolicy(), 9);
      expect(oracle.invariantViolations, s.name).toBe(0);
      expect(oracle.poolFreeMinMib, s.name).toBeGreaterThanOrEqual(0);
      expect(oracle.oomEvents, s.name).toBeLessThanOrEqual(ours.oomEvents);
    }
  });

  it('uses what it is shown: blinded (every demand reported as zero) it lets the spiky guests be OOM-killed', () => {
    const s = standardScenarios(1500).find((x) => x.name === 'spiky')!;
    const seeing = simulate(s, oraclePolicy(), 4);
    const base = oraclePolicy();
    const blind = {
      ...base,
      name: 'blind',
      stepWithForesight: (st: null, input: Parameters<typeof base.stepWithForesight>[1]) => base.stepWithForesight(st, input, new Map()),
    };
    const blinded = simulate(s, blind, 4);
    expect(seeing.oomEvents).toBe(0);
    expect(seeing.pressureRoundsPercent).toBe(0);
    expect(blinded.oomEvents).toBeGreaterThan(0);
  });

  it('refuses to run without the future', () => {
    expect(() => oraclePolicy().step(null, { nowMs: 0, poolSizeMib: 1, poolFreeMib: 1, vms: [] })).toThrow(/future/);
  });
});
