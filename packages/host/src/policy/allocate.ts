// Weighted water-filling in whole MiB: the one fairness primitive the engine
// uses both to share free quota among pressured guests and to spread a reclaim
// over guests with surplus.

/** One claimant: it gets at most capMib, and shares what is short in proportion to shareWeight. */
export interface AllocationClaim {
  readonly capMib: number;
  readonly shareWeight: number;
}

/**
 * Splits totalMib among claims: each gets min(cap, λ·weight) with λ chosen so
 * the sum is min(total, Σcap) (what a capped claim leaves goes to the others).
 * Results are whole MiB, never exceed the cap, and never sum above totalMib;
 * leftover MiB from rounding go to the largest remainders, ties to the earlier
 * claim, so the result is deterministic.
 */
export function waterFillMib(totalMib: number, claims: readonly AllocationClaim[]): number[] {
  const caps = claims.map((c) => Math.max(0, Math.floor(c.capMib)));
  const weights = claims.map((c, i) => (caps[i]! > 0 ? Math.max(c.shareWeight, Number.MIN_VALUE) : 0));
  const budget = Math.max(0, Math.floor(totalMib));
  const capSum = caps.reduce((a, b) => a + b, 0);
  if (capSum <= budget) return caps;

  // Claims sorted by the λ at which they saturate; fill from the smallest.
  const order = claims.map((_, i) => i).filter((i) => caps[i]! > 0);
  order.sort((a, b) => caps[a]! / weights[a]! - caps[b]! / weights[b]! || a - b);
  const exact = new Array<number>(claims.length).fill(0);
  let remainingMib = budget;
  let remainingWeight = order.reduce((s, i) => s + weights[i]!, 0);
  for (const i of order) {
    const fair = (remainingMib * weights[i]!) / remainingWeight;
    const given = Math.min(caps[i]!, fair);
    exact[i] = given;
    remainingMib -= given;
    remainingWeight -= weights[i]!;
  }

  const result = exact.map((x) => Math.floor(x + 1e-9));
  let leftover = budget - result.reduce((a, b) => a + b, 0);
  const byRemainder = exact
    .map((x, i) => ({ i, rem: x - result[i]! }))
    .filter(({ i }) => result[i]! < caps[i]!)
    .sort((a, b) => b.rem - a.rem || a.i - b.i);
  for (const { i } of byRemainder) {
    if (leftover <= 0) break;
    result[i]! += 1;
    leftover -= 1;
  }
  return result;
}
