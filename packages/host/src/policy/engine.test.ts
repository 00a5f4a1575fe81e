import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_CONFIG, resolvePolicyConfig } from './config.js';
import { createPolicyEngine, initialPolicyState, policyStep } from './engine.js';
import { decisionViolations } from './invariants.js';
import { balloonLimitMib } from '../pool/balloon-rules.js';
import { policyBalloonCapMib } from './limits.js';
import { testInput, testSettings, testStats, testVm } from './testkit.js';
import type { PolicyInput, PolicyState } from './types.js';

const config = DEFAULT_POLICY_CONFIG;
const step = (input: PolicyInput, state: PolicyState = initialPolicyState()) => {
  const result = policyStep(config, state, input);
  expect(decisionViolations(input, result.decision)).toEqual([]);
  return result;
};
const changeOf = (result: ReturnType<typeof step>, name: string) => result.decision.changes.find((c) => c.name === name);

describe('limits', () => {
  it('applies the 90 % rule as ceil(0.9 x memory) - 1', () => {
    expect(balloonLimitMib(4096)).toBe(3686);
    expect(balloonLimitMib(1000)).toBe(899);
    expect(balloonLimitMib(0)).toBe(0);
  });

  it('takes the smallest of balloon max, memory - min and the 90 % rule', () => {
    expect(policyBalloonCapMib({ memoryMib: 4096, settings: testSettings({ balloonMaxMib: 5000, memoryMinMib: 0 }) })).toBe(3686);
    expect(policyBalloonCapMib({ memoryMib: 4096, settings: testSettings({ balloonMaxMib: 5000, memoryMinMib: 1096 }) })).toBe(3000);
    expect(policyBalloonCapMib({ memoryMib: 4096, settings: testSettings({ balloonMaxMib: 1000 }) })).toBe(1000);
    expect(policyBalloonCapMib({ memoryMib: 4096, settings: testSettings({ memoryMinMib: 8000 }) })).toBe(0);
  });
});

describe('policyStep', () => {
  it('changes nothing before the guests report stats', () => {
    const result = step(testInput([testVm('a', 1000, undefined), testVm('b', 1000, undefined)], 8192));
    expect(result.decision.changes).toEqual([]);
  });

  it('deflates a guest under pressure from free quota above the margin, by at most one step', () => {
    // available 100 MiB of 4096: critical; the step is 10 % of memory = 409 MiB.
    const result = step(testInput([testVm('a', 2000, testStats(100))], 4096 - 2000 + 2000));
    const c = changeOf(result, 'a');
    expect(c?.reason).toBe('pressure');
    expect(c?.targetMib).toBe(2000 - 409);
  });

  it('gives a non-critical guest what brings it to mid-band', () => {
    // buffer 819, mid-band 921.6: available 800 (steady) wants 121 MiB.
    let state = initialPolicyState();
    const vm = testVm('a', 2000, testStats(800));
    const input = testInput([vm], 8192);
    state = step(input, state).state;
    const result = step(input, state);
    expect(changeOf(result, 'a')?.targetMib).toBe(2000 - 121);
  });

  it('leaves a guest alone inside the dead band', () => {
    // between buffer (819) and buffer + band (1024): neither pressure nor surplus.
    const vms = [testVm('a', 2000, testStats(900)), testVm('b', 2000, testStats(1000))];
    let state = initialPolicyState();
    for (let i = 0; i < 20; i++) {
      const result = step(testInput(vms, 4192 + 300, i * 1000), state);
      expect(result.decision.changes).toEqual([]);
      state = result.state;
    }
  });

  it('does not move on one noisy low sample, but does on a critical one', () => {
    // Free quota 300 MiB: above the margin, below the relax reserve.
    const calm = testInput([testVm('a', 1000, testStats(1000))], 3096 + 300);
    const state = step(calm).state;
    const dip = step(testInput([testVm('a', 1000, testStats(700))], 3096 + 300, 1000), state);
    expect(changeOf(dip, 'a')).toBeUndefined();
    const crash = step(testInput([testVm('a', 1000, testStats(50))], 8192, 1000), state);
    expect(changeOf(crash, 'a')?.reason).toBe('pressure');
  });

  it('treats rising PSI as pressure even with memory available', () => {
    const state = step(testInput([testVm('a', 1000, testStats(950))], 8192)).state;
    const result = step(testInput([testVm('a', 1000, testStats(950, { psiSomeAvg10Percent: 30 }))], 8192, 1000), state);
    expect(changeOf(result, 'a')?.reason).toBe('pressure');
  });

  it('splits short free quota among pressured guests by weight', () => {
    const heavy = testVm('heavy', 2000, testStats(50), { settings: testSettings({ memoryWeight: 300 }) });
    const light = testVm('light', 2000, testStats(50), { settings: testSettings({ memoryWeight: 100 }) });
    // 400 MiB free above the 256 MiB margin, both want 409; critical may then spend the margin too.
    const input: PolicyInput = { nowMs: 0, poolSizeMib: 8192, poolFreeMib: 400 + 256, vms: [heavy, light] };
    const result = step(input);
    const given = (n: string) => 2000 - (changeOf(result, n)?.targetMib ?? 2000);
    expect(given('heavy') + given('light')).toBeLessThanOrEqual(656);
    expect(given('heavy')).toBeGreaterThan(2 * given('light'));
  });

  it('survives a zero weight (treated as 1)', () => {
    const zero = testVm('zero', 2000, testStats(50), { settings: testSettings({ memoryWeight: 0 }) });
    const other = testVm('other', 2000, testStats(50));
    const result = step({ nowMs: 0, poolSizeMib: 8192, poolFreeMib: 300, vms: [zero, other] });
    for (const c of result.decision.changes) expect(Number.isInteger(c.targetMib)).toBe(true);
    expect(result.decision.changes.length).toBeGreaterThan(0);
  });

  it('keeps the safety margin from a guest that is low but not critical', () => {
    const vm = testVm('a', 2000, testStats(700));
    const input: PolicyInput = { nowMs: 0, poolSizeMib: 8192, poolFreeMib: 200, vms: [vm] };
    const result = step(input);
    expect(changeOf(result, 'a')).toBeUndefined();
  });

  it('funds a deflate by inflating a guest with surplus, and grants it once pinned', () => {
    const needy = testVm('needy', 2000, testStats(50));
    const idle = testVm('idle', 500, testStats(3000));
    const first = step({ nowMs: 0, poolSizeMib: 8192, poolFreeMib: 0, vms: [needy, idle] });
    expect(changeOf(first, 'needy')).toBeUndefined();
    const take = changeOf(first, 'idle');
    expect(take?.reason).toBe('reclaim');
    const takenMib = take!.targetMib - 500;
    expect(takenMib).toBeGreaterThan(0);
    expect(takenMib).toBeLessThanOrEqual(204); // 5 % of 4096
    // The idle guest has not pinned yet: nothing is granted, and nothing more is asked of it.
    const pending = step({ nowMs: 1000, poolSizeMib: 8192, poolFreeMib: 0, vms: [needy, { ...idle, targetMib: take!.targetMib }] }, first.state);
    expect(changeOf(pending, 'needy')).toBeUndefined();
    // Once pinned, the freed quota goes to the needy guest.
    const pinned = { ...idle, targetMib: take!.targetMib, actualMib: take!.targetMib, stats: testStats(3000 - takenMib) };
    const second = step({ nowMs: 2000, poolSizeMib: 8192, poolFreeMib: takenMib, vms: [needy, pinned] }, pending.state);
    expect(changeOf(second, 'needy')?.reason).toBe('pressure');
  });

  it('refills the safety margin from guests with surplus', () => {
    const result = step({ nowMs: 0, poolSizeMib: 8192, poolFreeMib: 0, vms: [testVm('idle', 500, testStats(3000))] });
    expect(changeOf(result, 'idle')?.reason).toBe('margin');
  });

  it('does not take from a guest right after giving to it', () => {
    let state = step({ nowMs: 0, poolSizeMib: 8192, poolFreeMib: 4096, vms: [testVm('a', 2000, testStats(50))] }).state;
    // Now it looks rich, and the margin is short: still no inflate within the cooldown.
    const rich = testVm('a', 1591, testStats(3000));
    const soon = step({ nowMs: 5000, poolSizeMib: 8192, poolFreeMib: 0, vms: [rich] }, state);
    expect(changeOf(soon, 'a')).toBeUndefined();
    state = soon.state;
    const later = step({ nowMs: 20_000, poolSizeMib: 8192, poolFreeMib: 0, vms: [rich] }, state);
    expect(changeOf(later, 'a')?.targetMib).toBeGreaterThan(1591);
  });

  it('squeezes a guest that claims pressure while holding more than its share', () => {
    // The liar has an empty balloon; the honest guest is critical with a big balloon; no free quota.
    const liar = testVm('liar', 0, testStats(20, { psiSomeAvg10Percent: 40, psiFullAvg10Percent: 15 }));
    const honest = testVm('honest', 3000, testStats(50));
    const result = step({ nowMs: 0, poolSizeMib: 8192, poolFreeMib: 0, vms: [liar, honest] });
    const c = changeOf(result, 'liar');
    expect(c?.reason).toBe('share');
    expect(c!.targetMib).toBeGreaterThan(0);
    // And the squeezed guest is not paid back on the next round.
    const next = step(
      { nowMs: 1000, poolSizeMib: 8192, poolFreeMib: 1000, vms: [{ ...liar, targetMib: c!.targetMib, actualMib: c!.targetMib }, honest] },
      result.state,
    );
    expect(changeOf(next, 'liar')?.reason).not.toBe('pressure');
    expect(changeOf(next, 'honest')?.reason).toBe('pressure');
  });

  it('lowers a target above the largest legal balloon, as far as the pool can fund', () => {
    const over = testVm('a', 4000, testStats(50), { settings: testSettings({ balloonMaxMib: 5000, memoryMinMib: 0 }) });
    const funded = step({ nowMs: 0, poolSizeMib: 8192, poolFreeMib: 1000, vms: [over] });
    expect(changeOf(funded, 'a')).toMatchObject({ reason: 'limit', targetMib: 3686 });
    const broke = step({ nowMs: 0, poolSizeMib: 8192, poolFreeMib: 100, vms: [over] });
    expect(changeOf(broke, 'a')).toMatchObject({ reason: 'limit', targetMib: 3900 });
  });

  it('never inflates past the balloon max', () => {
    const vm = testVm('idle', 900, testStats(3000), { settings: testSettings({ balloonMaxMib: 1000 }) });
    const result = step({ nowMs: 0, poolSizeMib: 8192, poolFreeMib: 0, vms: [vm] });
    expect(changeOf(result, 'idle')?.targetMib).toBe(1000);
  });

  it('skips changes below 0.25 % of memory', () => {
    // mid-band is 921.6; available 915 (steady) wants 6 MiB < ceil(0.25 % of 4096) = 11.
    const vm = testVm('a', 1000, testStats(815));
    let state = step(testInput([vm], 8192)).state;
    const steady = testVm('a', 1000, testStats(915));
    for (let i = 0; i < 30; i++) state = step(testInput([steady], 8192, i * 1000), state).state;
    const result = step(testInput([steady], 8192, 40_000), state);
    expect(result.decision.changes).toEqual([]);
  });

  it('hands idle free quota back beyond the reserve', () => {
    const result = step({ nowMs: 0, poolSizeMib: 16384, poolFreeMib: 4000, vms: [testVm('a', 2000, testStats(1000))] });
    expect(changeOf(result, 'a')?.reason).toBe('relax');
    expect(result.decision.poolFreeAfterMib).toBeGreaterThanOrEqual(config.safetyMarginMib + config.relaxReserveMib);
  });
});

describe('a sample seen again (rounds faster than the guests report)', () => {
  // The guest follows its target at once; its stats stay those of sample 1.
  const follow = (vm: ReturnType<typeof testVm>, targetMib: number) => ({ ...vm, targetMib, actualMib: targetMib });

  it('does not grant the same need twice', () => {
    const run = (sampledAtMs: number | undefined) => {
      const vm = testVm('a', 2000, testStats(700, sampledAtMs === undefined ? {} : { sampledAtMs }));
      // A pool with no idle quota beyond margin + reserve: nothing but pressure moves the balloon.
      const first = step(testInput([vm], 3500, 0));
      const t1 = changeOf(first, 'a')!.targetMib;
      const second = step(testInput([follow(vm, t1)], 3500, 1000), first.state);
      return { t1, t2: changeOf(second, 'a')?.targetMib };
    };
    // Available 700 MiB, mid-band 921.6 MiB: the need is 221 MiB, given once.
    expect(run(1)).toEqual({ t1: 2000 - 221, t2: undefined });
    // Without sample times every round is a new sample: the same need again.
    expect(run(undefined)).toEqual({ t1: 2000 - 221, t2: 2000 - 221 - 221 });
  });

  it("counts a donor's pinned inflate against its surplus", () => {
    const wideMargin = resolvePolicyConfig({ safetyMarginMib: 1000 });
    const run = (sampledAtMs: number | undefined) => {
      // Available 1324 MiB: 300 MiB above the top of the band (25 % of 4096).
      let vm = testVm('d', 0, testStats(1324, sampledAtMs === undefined ? {} : { sampledAtMs }));
      let state = initialPolicyState();
      for (let round = 0; round < 2; round++) {
        const input = testInput([vm], 4096, round * 1000);
        const result = policyStep(wideMargin, state, input);
        expect(decisionViolations(input, result.decision)).toEqual([]);
        state = result.state;
        const c = result.decision.changes.find((x) => x.name === 'd');
        if (c) vm = follow(vm, c.targetMib);
      }
      return vm.targetMib;
    };
    expect(run(1)).toBe(300);
    expect(run(undefined)).toBe(408);
  });

  it('folds a new sample as before', () => {
    const vm = testVm('a', 2000, testStats(700, { sampledAtMs: 1 }));
    const first = step(testInput([vm], 8192, 0));
    const t1 = changeOf(first, 'a')!.targetMib;
    const next = { ...follow(vm, t1), stats: testStats(700, { sampledAtMs: 2 }) };
    expect(changeOf(step(testInput([next], 8192, 1000), first.state), 'a')?.targetMib).toBeLessThan(t1);
  });
});

describe('createPolicyEngine', () => {
  it('carries its state between rounds, as plain JSON', () => {
    const engine = createPolicyEngine({ safetyMarginMib: 0 });
    engine.step(testInput([testVm('a', 1000, testStats(1000))], 8192));
    const saved = JSON.parse(JSON.stringify(engine.state)) as PolicyState;
    expect(saved).toEqual(engine.state);
    const again = createPolicyEngine({ safetyMarginMib: 0 }, saved);
    const input = testInput([testVm('a', 1000, testStats(500))], 8192, 1000);
    expect(again.step(input)).toEqual(engine.step(input));
  });

  it('refuses nonsense config', () => {
    expect(() => resolvePolicyConfig({ statsEwmaWeight: 0 })).toThrow(RangeError);
    expect(() => resolvePolicyConfig({ safetyMarginMib: -1 })).toThrow(RangeError);
    expect(() => resolvePolicyConfig({ policyIntervalMs: Number.NaN })).toThrow(RangeError);
  });
});
