import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HostError } from '../errors.js';
import { autoBalloonCapMib, balloonLimitMib, balloonTargetProblem, heldMib } from './balloon-rules.js';
import { Pool } from './pool.js';

const vm = (memoryMib: number, targetMib = 0, actualMib = 0) => ({ memoryMib, memoryMinMib: 0, balloonMaxMib: 0, targetMib, actualMib });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof HostError ? err.code : 'not-a-host-error';
  }
  return undefined;
}

describe('balloon rules', () => {
  it('keeps every balloon strictly below 90 % of memory', () => {
    expect(balloonLimitMib(512)).toBe(460);
    expect(balloonLimitMib(1000)).toBe(899);
    expect(balloonLimitMib(10)).toBe(8);
    expect(balloonLimitMib(1)).toBe(0);
    expect(balloonLimitMib(0)).toBe(0);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 * 1024 * 1024 }), (m) => {
        const max = balloonLimitMib(m);
        return max * 10 < m * 9 && (max + 1) * 10 >= m * 9;
      }),
    );
  });

  it('explains a refused target', () => {
    expect(balloonTargetProblem(460, 512, 'a')).toBeNull();
    expect(balloonTargetProblem(461, 512, 'a')).toMatch(/90 % or more of the memory of VM 'a' \(512 MiB\): the largest allowed is 460 MiB/);
    expect(balloonTargetProblem(-1, 512, 'a')).toMatch(/0 or more/);
    expect(balloonTargetProblem(1.5, 512, 'a')).toMatch(/whole number/);
  });

  it('counts only what is both asked for and pinned as reclaimed', () => {
    expect(heldMib(512, 256, 100)).toBe(412);
    expect(heldMib(512, 100, 256)).toBe(412);
    expect(heldMib(512, 0, 0)).toBe(512);
  });

  it('caps automatic balloons by 90 %, the minimum and the maximum', () => {
    expect(autoBalloonCapMib({ memoryMib: 512, memoryMinMib: 0, balloonMaxMib: 0 })).toBe(460);
    expect(autoBalloonCapMib({ memoryMib: 512, memoryMinMib: 200, balloonMaxMib: 0 })).toBe(312);
    expect(autoBalloonCapMib({ memoryMib: 512, memoryMinMib: 0, balloonMaxMib: 100 })).toBe(100);
    expect(autoBalloonCapMib({ memoryMib: 512, memoryMinMib: 600, balloonMaxMib: 0 })).toBe(0);
  });
});

describe('Pool', () => {
  it('admits while the free quota holds the guest, and refuses beyond', () => {
    const pool = new Pool(1024);
    pool.admit('a', vm(512));
    expect(pool.heldMib).toBe(512);
    expect(pool.freeMib).toBe(512);
    pool.admit('b', vm(512, 100, 0));
    expect(pool.freeMib).toBe(0);
    expect(codeOf(() => pool.admit('c', vm(1)))).toBe('pool_exhausted');
    expect(codeOf(() => pool.admit('a', vm(1)))).toBe('already_exists');
    expect(pool.names()).toEqual(['a', 'b']);
  });

  it('counts a reconnecting guest by the balloon it already holds', () => {
    const pool = new Pool(300);
    pool.admit('a', vm(512, 300, 300));
    expect(pool.heldMib).toBe(212);
    expect(pool.reclaimedMib).toBe(300);
  });

  it('clamps a guest actual beyond its memory, and never counts an actual above the target', () => {
    const pool = new Pool(1024);
    pool.admit('a', vm(512, 100, 0));
    expect(pool.reportActual('a', 10_000)).toBe(512);
    expect(pool.get('a')?.heldMib).toBe(412);
    expect(pool.reportActual('a', -5)).toBe(0);
    expect(pool.reportActual('a', Number.NaN)).toBe(0);
  });

  it('charges a deflate at once and frees an inflate only as the guest pins it', () => {
    const pool = new Pool(600);
    pool.admit('a', vm(512, 200, 200));
    expect(pool.freeMib).toBe(288);
    pool.setTarget('a', 400);
    expect(pool.freeMib).toBe(288);
    pool.reportActual('a', 300);
    expect(pool.freeMib).toBe(388);
    pool.setTarget('a', 100);
    expect(pool.freeMib).toBe(188);
    pool.reportActual('a', 100);
    expect(pool.freeMib).toBe(188);
  });

  it('refuses a deflate the free quota cannot fund and leaves the target alone', () => {
    const pool = new Pool(600);
    pool.admit('a', vm(512, 300, 300));
    pool.admit('b', vm(488, 100, 100));
    expect(pool.freeMib).toBe(0);
    expect(codeOf(() => pool.setTarget('a', 0))).toBe('pool_exhausted');
    expect(pool.get('a')?.targetMib).toBe(300);
    expect(codeOf(() => pool.setTarget('a', 461))).toBe('out_of_range');
    expect(codeOf(() => pool.setTarget('zz', 1))).toBe('not_running');
  });

  it('gives back everything a stopped VM held', () => {
    const pool = new Pool(1024);
    pool.admit('a', vm(512, 100, 50));
    expect(pool.release('a')).toBe(462);
    expect(pool.heldMib).toBe(0);
    expect(pool.release('a')).toBe(0);
  });

  it('plans reclaim in proportion to what each VM holds above its minimum', () => {
    const pool = new Pool(768);
    pool.admit('a', vm(512));
    const first = pool.planReclaim(512);
    expect(first.deficitMib).toBe(256);
    expect(first.targets).toEqual(new Map([['a', 256]]));
    pool.setTarget('a', 256);
    pool.reportActual('a', 256);
    pool.admit('b', vm(512));
    expect(pool.freeMib).toBe(0);
    const second = pool.planReclaim(512);
    // rooms: a 460-256 = 204, b 460: shares 157.3 and 354.7
    expect(second.targets).toEqual(
      new Map([
        ['a', 256 + 157],
        ['b', 355],
      ]),
    );
  });

  it('never plans beyond 90 % and refuses what cannot be reclaimed', () => {
    const pool = new Pool(512);
    pool.admit('a', vm(512));
    expect(codeOf(() => pool.planReclaim(461))).toBe('pool_exhausted');
    expect(pool.planReclaim(460).targets.get('a')).toBe(460);
    expect(codeOf(() => pool.planReclaim(100, ['a']))).toBe('pool_exhausted');
  });

  it('caps a reclaim at the guest floor plus a margin once it has sent statistics', () => {
    const pool = new Pool(2048);
    pool.admit('a', vm(1024, 100, 100));
    expect(pool.reclaimCapMib('a')).toBe(921);
    // 300 MiB available, floor 64, margin 21 (2 % of 1024): 215 MiB more than the 100 it holds.
    pool.reportAvailable('a', 300, 64);
    expect(pool.reclaimCapMib('a')).toBe(315);
    expect(pool.reclaimableMib()).toBe(215);
    expect(pool.reclaimableMib(['a'])).toBe(0);
    // Below the floor: nothing beyond what it holds, never negative.
    pool.reportAvailable('a', 10, 64);
    expect(pool.reclaimCapMib('a')).toBe(25);
    expect(pool.reclaimableMib()).toBe(0);
  });

  it('counts an overcommit into the deficit, and plans its payback with a need of 0', () => {
    const pool = new Pool(1000);
    pool.admit('a', vm(500));
    pool.admit('b', vm(600, 100, 100));
    pool.reportActual('b', 90);
    expect(pool.overcommitMib).toBe(10);
    expect(pool.planReclaim(0, ['b'])).toEqual({ deficitMib: 10, targets: new Map([['a', 10]]) });
    expect(pool.planReclaim(5, ['b']).deficitMib).toBe(15);
    expect(codeOf(() => pool.planReclaim(0, ['a', 'b']))).toBe('pool_exhausted');
  });

  it('puts a reclaimed target back even when the free quota is short (restore), and refuses the same as a deflate', () => {
    const pool = new Pool(900);
    pool.admit('a', vm(600));
    pool.admit('b', vm(400, 100, 100));
    pool.setTarget('a', 203);
    pool.reportActual('a', 203);
    pool.reportActual('b', 0);
    expect(pool.freeMib).toBe(103);
    expect(codeOf(() => pool.setTarget('a', 0))).toBe('pool_exhausted');
    pool.setTarget('a', 0, { restore: true });
    expect(pool.get('a')?.targetMib).toBe(0);
    expect(pool.overcommitMib).toBe(100);
    expect(codeOf(() => pool.setTarget('a', 600, { restore: true }))).toBe('out_of_range');
  });

  it('plans nothing when the free quota suffices', () => {
    const pool = new Pool(1024);
    pool.admit('a', vm(512));
    expect(pool.planReclaim(512)).toEqual({ deficitMib: 0, targets: new Map() });
  });
});

// Property: random sequences of starts, stops, targets (controlvm), reclaim
// plans and guest progress never let the sum of what VMs hold exceed the pool.
type Op =
  | { kind: 'start'; vm: number; memoryMib: number; targetMib: number; actualMib: number; minMib: number }
  | { kind: 'stop'; vm: number }
  | { kind: 'target'; vm: number; targetMib: number }
  | { kind: 'progress'; vm: number; stepMib: number }
  | { kind: 'reclaim'; needMib: number }
  | { kind: 'lie'; vm: number; actualMib: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('start' as const),
    vm: fc.integer({ min: 0, max: 5 }),
    memoryMib: fc.integer({ min: 1, max: 2048 }),
    targetMib: fc.integer({ min: 0, max: 2048 }),
    actualMib: fc.integer({ min: 0, max: 2048 }),
    minMib: fc.integer({ min: 0, max: 512 }),
  }),
  fc.record({ kind: fc.constant('stop' as const), vm: fc.integer({ min: 0, max: 5 }) }),
  fc.record({ kind: fc.constant('target' as const), vm: fc.integer({ min: 0, max: 5 }), targetMib: fc.integer({ min: -10, max: 2100 }) }),
  fc.record({ kind: fc.constant('progress' as const), vm: fc.integer({ min: 0, max: 5 }), stepMib: fc.integer({ min: 1, max: 512 }) }),
  fc.record({ kind: fc.constant('reclaim' as const), needMib: fc.integer({ min: 0, max: 4096 }) }),
  fc.record({ kind: fc.constant('lie' as const), vm: fc.integer({ min: 0, max: 5 }), actualMib: fc.integer({ min: 0, max: 100_000 }) }),
);

function invariantHolds(pool: Pool): boolean {
  const list = pool.list();
  const held = list.reduce((s, v) => s + v.heldMib, 0);
  const reclaimed = list.reduce((s, v) => s + Math.min(v.targetMib, v.actualMib), 0);
  return (
    held === pool.heldMib &&
    reclaimed === pool.reclaimedMib &&
    pool.heldMib <= pool.sizeMib &&
    pool.freeMib === pool.sizeMib - pool.heldMib &&
    list.every(
      (v) => v.targetMib <= balloonLimitMib(v.memoryMib) && v.actualMib <= v.memoryMib && v.heldMib === v.memoryMib - Math.min(v.targetMib, v.actualMib),
    )
  );
}

describe('Pool properties', () => {
  it('never holds more than the pool, whatever the sequence of events', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4096 }), fc.array(opArb, { maxLength: 80 }), (sizeMib, ops) => {
        const pool = new Pool(sizeMib);
        for (const op of ops) {
          const name = `vm${'vm' in op ? op.vm : ''}`;
          try {
            switch (op.kind) {
              case 'start':
                pool.admit(name, {
                  memoryMib: op.memoryMib,
                  memoryMinMib: op.minMib,
                  balloonMaxMib: 0,
                  targetMib: Math.min(op.targetMib, balloonLimitMib(op.memoryMib)),
                  actualMib: op.actualMib,
                });
                break;
              case 'stop':
                pool.release(name);
                break;
              case 'target':
                pool.setTarget(name, op.targetMib);
                break;
              case 'progress': {
                // An honest guest moves its actual toward the target.
                const v = pool.get(name);
                if (!v) break;
                const next = v.actualMib < v.targetMib ? Math.min(v.targetMib, v.actualMib + op.stepMib) : Math.max(v.targetMib, v.actualMib - op.stepMib);
                pool.reportActual(name, next);
                break;
              }
              case 'lie': {
                // A guest claiming more than it was asked for gains nothing;
                // one claiming less than before than its target would be deflating on its own: not modelled here.
                const v = pool.get(name);
                if (!v || op.actualMib < Math.min(v.actualMib, v.targetMib)) break;
                pool.reportActual(name, op.actualMib);
                break;
              }
              case 'reclaim': {
                const plan = pool.planReclaim(op.needMib);
                for (const [n, t] of plan.targets) pool.setTarget(n, t);
                // Once every guest reaches its new target, the need is met.
                for (const n of pool.names()) pool.reportActual(n, pool.get(n)!.targetMib);
                if (pool.freeMib < op.needMib) return false;
                break;
              }
            }
          } catch (err) {
            if (!(err instanceof HostError)) throw err;
          }
          if (!invariantHolds(pool)) return false;
        }
        return true;
      }),
      { numRuns: 2000 },
    );
  });

  it('plans only raise targets, stay within caps and free exactly the deficit', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            memoryMib: fc.integer({ min: 1, max: 4096 }),
            targetFrac: fc.double({ min: 0, max: 1, noNaN: true }),
            actualFrac: fc.double({ min: 0, max: 1.2, noNaN: true }),
            minMib: fc.integer({ min: 0, max: 1024 }),
          }),
          { maxLength: 6 },
        ),
        fc.integer({ min: 0, max: 8192 }),
        fc.integer({ min: 0, max: 8192 }),
        (vms, extraMib, needMib) => {
          const rows = vms.map((v) => {
            const targetMib = Math.floor(v.targetFrac * balloonLimitMib(v.memoryMib));
            return { ...v, targetMib, actualMib: Math.floor(v.actualFrac * v.memoryMib) };
          });
          const size = rows.reduce((s, v) => s + Pool.admissionNeedMib(v.memoryMib, v.targetMib, v.actualMib), 0) + extraMib;
          const pool = new Pool(size);
          rows.forEach((v, i) =>
            pool.admit(`v${i}`, { memoryMib: v.memoryMib, memoryMinMib: v.minMib, balloonMaxMib: 0, targetMib: v.targetMib, actualMib: v.actualMib }),
          );
          let plan: ReturnType<Pool['planReclaim']>;
          try {
            plan = pool.planReclaim(needMib);
          } catch (err) {
            return err instanceof HostError && err.code === 'pool_exhausted';
          }
          let freed = 0;
          for (const [n, t] of plan.targets) {
            const v = pool.get(n)!;
            if (t <= v.targetMib || t > autoBalloonCapMib(v)) return false;
            freed += t - Math.min(v.targetMib, v.actualMib);
          }
          // Targets already on their way count too: after everyone reaches
          // their target the need is met.
          for (const n of pool.names()) {
            const v = pool.get(n)!;
            if (!plan.targets.has(n)) freed += v.targetMib - Math.min(v.targetMib, v.actualMib);
          }
          return pool.freeMib + freed >= needMib;
        },
      ),
      { numRuns: 2000 },
    );
  });
});
