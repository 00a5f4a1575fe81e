import { describe, expect, it } from 'vitest';
import { planLimits, sumOfLimits, type LimitState, type LimitStep } from './limit-plan.js';

const MiB = 1048576;
const state = (parentMib: number | null, children: Record<string, number | null>): LimitState => ({
  parentBytes: parentMib === null ? null : parentMib * MiB,
  children: new Map(Object.entries(children).map(([k, v]) => [k, v === null ? null : v * MiB])),
});
const wantedOf = (children: Record<string, number | null>) => new Map(Object.entries(children).map(([k, v]) => [k, v === null ? null : v * MiB]));

/** Applies steps one by one and returns the largest overshoot of the children's sum over the parent. */
function worstOvershoot(now: LimitState, steps: LimitStep[]): number {
  let parent = now.parentBytes;
  const children = new Map(now.children);
  let worst = -Infinity;
  for (const s of steps) {
    if (s.name === null) parent = s.toBytes;
    else children.set(s.name, s.toBytes);
    if (parent !== null) worst = Math.max(worst, sumOfLimits(children.values()) - parent);
  }
  return worst;
}

describe('planLimits', () => {
  it('lowers one guest before raising another', () => {
    const now = state(1024, { a: 512, b: 512 });
    const steps = planLimits(now, { children: wantedOf({ a: 768, b: 256 }) });
    expect(steps.map((s) => s.name)).toEqual(['b', 'a']);
    expect(worstOvershoot(now, steps)).toBeLessThanOrEqual(0);
  });

  it('adds a new guest after the cuts that make room for it', () => {
    const now = state(1024, { a: 600, b: 400 });
    const steps = planLimits(now, { children: wantedOf({ a: 300, b: 300, c: 400 }) });
    expect(steps.map((s) => s.name)).toEqual(['a', 'b', 'c']);
    expect(steps[2]).toEqual({ name: 'c', fromBytes: null, toBytes: 400 * MiB });
  });

  it('grows the parent first and shrinks it last', () => {
    const grow = planLimits(state(512, { a: 512 }), { parentBytes: 1024 * MiB, children: wantedOf({ a: 1024 }) });
    expect(grow.map((s) => s.name)).toEqual([null, 'a']);
    const shrink = planLimits(state(1024, { a: 1024 }), { parentBytes: 512 * MiB, children: wantedOf({ a: 512 }) });
    expect(shrink.map((s) => s.name)).toEqual(['a', null]);
  });

  it('refuses a wanted state over the parent and changes nothing', () => {
    expect(() => planLimits(state(1024, { a: 512 }), { children: wantedOf({ b: 600 }) })).toThrow(expect.objectContaining({ code: 'over_parent' }));
    expect(() => planLimits(state(1024, {}), { children: wantedOf({ a: null }) })).toThrow(/no limit/);
    expect(() => planLimits(state(2048, { a: 1024, b: 1024 }), { parentBytes: 1024 * MiB, children: new Map() })).toThrow(/above the pool cgroup/);
  });

  it('needs no steps when nothing changes; an unlimited parent takes anything', () => {
    expect(planLimits(state(1024, { a: 512 }), { children: wantedOf({ a: 512 }) })).toEqual([]);
    expect(planLimits(state(null, { a: 512 }), { children: wantedOf({ b: null }) })).toHaveLength(1);
  });

  it('never overshoots the parent, over many random plans', () => {
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 2000; round++) {
      const names = ['a', 'b', 'c', 'd', 'e'].slice(0, 1 + rnd(5));
      const parentMib = 256 + rnd(4096);
      const fit = (): Record<string, number> => {
        const out: Record<string, number> = {};
        let left = parentMib;
        for (const n of names) {
          if (rnd(4) === 0) continue;
          const v = rnd(left + 1);
          left -= v;
          if (v > 0) out[n] = v;
        }
        return out;
      };
      const now = state(parentMib, fit());
      const newParentMib = rnd(3) === 0 ? parentMib + rnd(512) - 256 : parentMib;
      const wanted = fit();
      const total = Object.values({ ...Object.fromEntries([...now.children].map(([k, v]) => [k, v! / MiB])), ...wanted }).reduce((a, b) => a + b, 0);
      if (total > newParentMib) {
        expect(() => planLimits(now, { parentBytes: newParentMib * MiB, children: wantedOf(wanted) })).toThrow();
        continue;
      }
      const steps = planLimits(now, { parentBytes: newParentMib * MiB, children: wantedOf(wanted) });
      expect(worstOvershoot(now, steps)).toBeLessThanOrEqual(0);
    }
  });
});
