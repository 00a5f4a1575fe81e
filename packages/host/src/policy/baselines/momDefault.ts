// A re-implementation of oVirt MOM's default balloon policy (doc/balloon.rules,
// "Auto-Balloon") with its constants. MOM speaks of the guest's memory size,
// not the balloon: balloon_cur is what the guest may use (our memory − balloon),
// balloon_max is its full memory, balloon_min is what it is guaranteed (our
// memory − the largest legal balloon). Host free memory is the pool's free
// quota; mem_unused is the guest's free memory; StatAvg averages the last
// sample-history-length samples. A baseline for the simulator only.
import { policyBalloonCapMib } from '../limits.js';
import type { BalloonPolicy, PolicyInput, PolicyStepResult, PolicyTargetChange } from '../types.js';

/** MOM's constants (doc/balloon.rules) and its default sample history (mom.conf). */
export const MOM_BALLOON_DEFAULTS = Object.freeze({
  /** pressure_threshold: host free below this fraction means host pressure. */
  pressureThresholdFraction: 0.2,
  /** pressure_critical: below this the guests are forced to swap. */
  pressureCriticalFraction: 0.05,
  /** min_guest_free_percent: free memory an unconstrained guest keeps (fraction). */
  minGuestFreeFraction: 0.2,
  /** max_balloon_change_percent: largest change per step (fraction of current memory). */
  maxBalloonChangeFraction: 0.05,
  /** min_balloon_change_percent: smaller changes are skipped (fraction of current memory). */
  minBalloonChangeFraction: 0.0025,
  /** sample-history-length: samples StatAvg averages. */
  sampleHistoryLength: 10,
  /** policy-engine interval of mom.conf. */
  policyIntervalMs: 10_000,
});

/** Constants of MOM's default balloon policy. */
export type MomBalloonConfig = { readonly [K in keyof typeof MOM_BALLOON_DEFAULTS]: number };

/** MOM's per-guest sample history (what StatAvg averages). */
export interface MomState {
  readonly hostFreeFractions: readonly number[];
  readonly guests: Readonly<Record<string, { readonly balloonCurMib: readonly number[]; readonly memUnusedMib: readonly number[] }>>;
}

const push = (xs: readonly number[] | undefined, x: number, n: number): number[] => [...(xs ?? []), x].slice(-n);
const avg = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** MOM's default balloon policy as a BalloonPolicy. */
export function momDefaultPolicy(overrides: Partial<MomBalloonConfig> = {}): BalloonPolicy<MomState> {
  const c = { ...MOM_BALLOON_DEFAULTS, ...overrides };
  return {
    name: 'MOM default',
    initialState: () => ({ hostFreeFractions: [], guests: {} }),
    step(state, input: PolicyInput): PolicyStepResult<MomState> {
      const hostFreeFractions = push(state.hostFreeFractions, Math.max(0, input.poolFreeMib) / input.poolSizeMib, c.sampleHistoryLength);
      const hostFreeFraction = avg(hostFreeFractions);
      const guests: Record<string, { balloonCurMib: number[]; memUnusedMib: number[] }> = {};
      const changes: PolicyTargetChange[] = [];
      const hostPressure = hostFreeFraction < c.pressureThresholdFraction;
      // shrink_guest's guest_free_percent; grow_guest reads the same variable,
      // which only shrink_guest defines, so growing uses min_guest_free_percent.
      const guestFreeFraction = !hostPressure
        ? c.minGuestFreeFraction
        : hostFreeFraction <= c.pressureCriticalFraction
          ? -0.05 + hostFreeFraction
          : c.minGuestFreeFraction * (hostFreeFraction / c.pressureThresholdFraction);
      for (const vm of input.vms) {
        if (vm.stats === undefined) continue;
        // MOM controls the guest's memory size; the guest's current size is what it has not ballooned.
        const balloonCurMib = vm.memoryMib - vm.actualMib;
        const prev = state.guests[vm.name];
        const g = {
          balloonCurMib: push(prev?.balloonCurMib, balloonCurMib, c.sampleHistoryLength),
          memUnusedMib: push(prev?.memUnusedMib, Math.max(0, vm.stats.freeMib), c.sampleHistoryLength),
        };
        guests[vm.name] = g;
        const guestUsedMib = avg(g.balloonCurMib) - avg(g.memUnusedMib);
        const balloonMaxMib = vm.memoryMib;
        const guaranteedMib = vm.memoryMib - policyBalloonCapMib(vm);
        // Note MOM's `min` here (not max): the floor is the lower of the guarantee and the guest's need.
        const balloonMinMib = Math.min(guaranteedMib, guestUsedMib + guestFreeFraction * balloonCurMib);
        let sizeMib: number;
        if (hostPressure) {
          sizeMib = balloonCurMib * (1 - c.maxBalloonChangeFraction);
          if (sizeMib < balloonMinMib) sizeMib = balloonMinMib;
          if (!(sizeMib <= balloonCurMib)) continue;
        } else {
          if (!(balloonCurMib < balloonMaxMib)) continue;
          sizeMib = balloonCurMib * (1 + c.maxBalloonChangeFraction);
          if (sizeMib > balloonMaxMib) sizeMib = balloonMaxMib;
          if (sizeMib < balloonMinMib) sizeMib = balloonMinMib;
        }
        // change_big_enough
        if (!(Math.abs(sizeMib - balloonCurMib) > c.minBalloonChangeFraction * balloonCurMib)) continue;
        const targetMib = Math.max(0, Math.round(vm.memoryMib - sizeMib));
        if (targetMib === vm.targetMib) continue;
        changes.push({
          name: vm.name,
          previousTargetMib: vm.targetMib,
          targetMib,
          reason: targetMib < vm.targetMib ? 'pressure' : 'reclaim',
          detail: `host free ${(hostFreeFraction * 100).toFixed(1)} %: guest memory ${Math.round(balloonCurMib)} -> ${Math.round(sizeMib)} MiB`,
        });
      }
      return { state: { hostFreeFractions, guests }, decision: { changes, poolFreeAfterMib: input.poolFreeMib, unmetDemandMib: 0 } };
    },
  };
}
