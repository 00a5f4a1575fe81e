import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { waterFillMib } from './allocate.js';

describe('waterFillMib', () => {
  it('gives everyone their cap when the total covers them', () => {
    expect(
      waterFillMib(1000, [
        { capMib: 100, shareWeight: 1 },
        { capMib: 200, shareWeight: 5 },
      ]),
    ).toEqual([100, 200]);
  });

  it('splits a short total by weight', () => {
    expect(
      waterFillMib(400, [
        { capMib: 1000, shareWeight: 300 },
        { capMib: 1000, shareWeight: 100 },
      ]),
    ).toEqual([300, 100]);
  });

  it('gives what a capped claim leaves to the others', () => {
    expect(
      waterFillMib(400, [
        { capMib: 50, shareWeight: 1 },
        { capMib: 1000, shareWeight: 1 },
      ]),
    ).toEqual([50, 350]);
  });

  it('never exceeds the total or a cap, and spends all it can', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        fc.array(fc.record({ capMib: fc.integer({ min: 0, max: 5000 }), shareWeight: fc.double({ min: 0.001, max: 10_000, noNaN: true }) }), { maxLength: 8 }),
        (total, claims) => {
          const out = waterFillMib(total, claims);
          const sum = out.reduce((a, b) => a + b, 0);
          expect(sum).toBeLessThanOrEqual(total);
          out.forEach((x, i) => {
            expect(Number.isInteger(x)).toBe(true);
            expect(x).toBeGreaterThanOrEqual(0);
            expect(x).toBeLessThanOrEqual(claims[i]!.capMib);
          });
          expect(sum).toBe(
            Math.min(
              total,
              claims.reduce((s, c) => s + c.capMib, 0),
            ),
          );
        },
      ),
      { seed: 0x5eed },
    );
  });
});
