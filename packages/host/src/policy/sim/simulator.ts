// The deterministic simulator: synthetic guests whose memory use responds to
// their balloons, a host pool that applies a policy's targets the way the real
// pool would (refusing what it cannot fund), and the measurements the README's
// table reports.
import { decisionViolations } from '../invariants.js';
import { heldMib, policyBalloonCapMib } from '../limits.js';
import type { BalloonPolicy, PolicyDecision, PolicyGuestStats, PolicyInput, PolicyVmSettings } from '../types.js';
import { createPrng, type Prng } from './prng.js';
import { createWorkload, type Workload, type WorkloadSpec } from './workloads.js';

/** One guest of a scenario. */
export interface SimGuestSpec {
  readonly name: string;
  readonly memoryMib: number;
  readonly settings: PolicyVmSettings;
  readonly workload: WorkloadSpec;
  /** The balloon it starts with (the scenario makes these fit the pool). */
  readonly initialBalloonMib: number;
}

/** A scenario: guests, a pool, a length. */
export interface Scenario {
  readonly name: string;
  readonly poolSizeMib: number;
  readonly rounds: number;
  readonly guests: readonly SimGuestSpec[];
  /** Guests whose wants exceed what the pool can give: fairness is measured among them. */
  readonly contenders: readonly string[];
}

/** How the simulated guests behave (the same for every engine). */
export interface SimPhysics {
  /** MiB an agent can pin per round (deflates are immediate). */
  readonly inflateMibPerRound: number;
  /** Page cache a guest fills, in % of its memory (reclaimable, counted in available). */
  readonly cachePercent: number;
  /** Honest guests' stats carry uniform noise of ± this % of memory. */
  readonly statsNoisePercent: number;
  /** A guest is under pressure while its true available memory is below this % of its memory. */
  readonly pressurePercent: number;
  /** The policy's clock advances by this much per round. */
  readonly roundMs: number;
}

/** The physics the table uses. */
export const DEFAULT_SIM_PHYSICS: SimPhysics = Object.freeze({
  inflateMibPerRound: 512,
  cachePercent: 10,
  statsNoisePercent: 1,
  pressurePercent: 10,
  roundMs: 1000,
});

/** What one engine did on one scenario. */
export interface SimResult {
  readonly scenario: string;
  readonly engine: string;
  readonly rounds: number;
  /** Pressure episodes of honest guests (true available below pressurePercent). */
  readonly pressureEpisodes: number;
  /** Mean and worst rounds from the start of an episode to its end. */
  readonly reliefRoundsMean: number;
  readonly reliefRoundsMax: number;
  /** Episodes still open when the run ended. */
  readonly unrelievedEpisodes: number;
  /** % of honest guest-rounds spent under pressure. */
  readonly pressureRoundsPercent: number;
  readonly oomEvents: number;
  /** Changes of direction of each VM's target (inflate ↔ deflate), mean and worst per VM. */
  readonly directionChangesMeanPerVm: number;
  readonly directionChangesMaxPerVm: number;
  /** OOM kills per VM. */
  readonly oomEventsByVm: Readonly<Record<string, number>>;
  /**
   * Per contender: mean memory above its floor (MiB) divided by its weight, over
   * the rounds in which every contender wanted more than it had (true available
   * below its buffer; a liar always wants more).
   */
  readonly givenMibPerWeight: Readonly<Record<string, number>>;
  /** Rounds in which all contenders wanted more (the rounds fairness is measured on). */
  readonly contendedRounds: number;
  /** Jain's index of givenMibPerWeight over the contenders (1 = perfectly weighted). */
  readonly fairnessJain: number;
  /** Rounds whose raw decision broke a rule (before the pool gate). */
  readonly invariantViolations: number;
  /** Target changes the pool gate refused. */
  readonly refusedChanges: number;
  /** Pool free quota: the smallest seen (MiB). Never negative if nothing was violated. */
  readonly poolFreeMinMib: number;
}

interface GuestSim {
  readonly spec: SimGuestSpec;
  readonly workload: Workload;
  readonly balloonCapMib: number;
  targetMib: number;
  actualMib: number;
  usedMib: number;
  psiSomePercent: number;
  psiFullPercent: number;
  lastDirection: number;
  directionChanges: number;
  pressureStartRound: number | undefined;
  givenSumMib: number;
  givenRounds: number;
  ooms: number;
}

function availableOf(g: GuestSim): number {
  return Math.max(0, g.spec.memoryMib - g.usedMib - g.actualMib);
}

function reportStats(g: GuestSim, physics: SimPhysics, rng: Prng): PolicyGuestStats {
  const m = g.spec.memoryMib;
  if (g.spec.workload.kind === 'lying') {
    // Claims to be starving, forever, whatever it is given.
    return { availableMib: 0.01 * m, freeMib: 0.005 * m, cacheMib: 0, psiSomeAvg10Percent: 40, psiFullAvg10Percent: 15 };
  }
  const noiseMib = (rng.next() * 2 - 1) * (physics.statsNoisePercent / 100) * m;
  const availableMib = Math.max(0, Math.round(availableOf(g) + noiseMib));
  const cacheMib = Math.min(availableMib, (physics.cachePercent / 100) * m);
  return {
    availableMib,
    freeMib: Math.max(0, Math.round(availableMib - cacheMib)),
    cacheMib: Math.round(cacheMib),
    psiSomeAvg10Percent: g.psiSomePercent,
    psiFullAvg10Percent: g.psiFullPercent,
  };
}

/**
 * A policy that is shown each guest's true memory use of the coming round
 * (the simulator's oracle: no lag, no noise, no lies). Not a policy a host
 * can run: it measures how far the real ones are from the best possible.
 */
export interface ForesightPolicy<S> extends BalloonPolicy<S> {
  stepWithForesight(state: S, input: PolicyInput, demandMib: ReadonlyMap<string, number>): ReturnType<BalloonPolicy<S>['step']>;
}

function isForesight<S>(policy: BalloonPolicy<S>): policy is ForesightPolicy<S> {
  return typeof (policy as Partial<ForesightPolicy<S>>).stepWithForesight === 'function';
}

/** What an observer sees after each round (for tests and debugging). */
export interface SimRoundEvent {
  readonly round: number;
  readonly input: PolicyInput;
  readonly decision: PolicyDecision;
  readonly oomVms: readonly string[];
  readonly poolFreeMib: number;
}

/** Runs one policy on one scenario with a seed; deterministic. */
export function simulate<S>(
  scenario: Scenario,
  policy: BalloonPolicy<S>,
  seed: number,
  physics: SimPhysics = DEFAULT_SIM_PHYSICS,
  observe?: (event: SimRoundEvent) => void,
): SimResult {
  const rng = createPrng(seed);
  const guests: GuestSim[] = scenario.guests.map((spec) => ({
    spec,
    workload: createWorkload(spec.workload, spec.memoryMib),
    balloonCapMib: policyBalloonCapMib(spec),
    targetMib: spec.initialBalloonMib,
    actualMib: spec.initialBalloonMib,
    usedMib: (spec.memoryMib * spec.workload.basePercent) / 100,
    psiSomePercent: 0,
    psiFullPercent: 0,
    lastDirection: 0,
    directionChanges: 0,
    pressureStartRound: undefined,
    givenSumMib: 0,
    givenRounds: 0,
    ooms: 0,
  }));
  const poolFree = (): number => scenario.poolSizeMib - guests.reduce((s, g) => s + heldMib(g.spec.memoryMib, g.targetMib, g.actualMib), 0);
  if (poolFree() < 0) throw new RangeError(`scenario ${scenario.name}: the initial balloons leave the pool ${-poolFree()} MiB short`);
  let state = policy.initialState();
  let violations = 0;
  let refused = 0;
  let ooms = 0;
  let episodes = 0;
  let reliefSum = 0;
  let reliefMax = 0;
  let pressureRounds = 0;
  let honestRounds = 0;
  let poolFreeMinMib = Number.POSITIVE_INFINITY;
  let contendedRounds = 0;

  for (let round = 0; round < scenario.rounds; round++) {
    // 1. The host asks the policy.
    const input: PolicyInput = {
      nowMs: round * physics.roundMs,
      poolSizeMib: scenario.poolSizeMib,
      poolFreeMib: poolFree(),
      vms: guests.map((g) => ({
        name: g.spec.name,
        memoryMib: g.spec.memoryMib,
        targetMib: g.targetMib,
        actualMib: g.actualMib,
        settings: g.spec.settings,
        stats: round === 0 ? undefined : reportStats(g, physics, rng),
      })),
    };
    // The programs' use this round does not depend on the decision (only an
    // OOM kill, below, resets a workload), so it is drawn before the policy
    // runs: the same draws for every engine, and the oracle may look at it.
    const demandMib = new Map<string, number>();
    for (const g of guests) demandMib.set(g.spec.name, g.workload.advance(rng));
    const result = isForesight(policy) ? policy.stepWithForesight(state, input, demandMib) : policy.step(state, input);
    state = result.state;
    if (decisionViolations(input, result.decision).length > 0) violations += 1;

    // 2. The pool gate: a change it cannot fund, or one past the VM's limits, is refused.
    for (const c of result.decision.changes) {
      const g = guests.find((x) => x.spec.name === c.name);
      if (g === undefined) continue;
      const targetMib = Math.max(0, Math.round(c.targetMib));
      const costMib = heldMib(g.spec.memoryMib, targetMib, g.actualMib) - heldMib(g.spec.memoryMib, g.targetMib, g.actualMib);
      if ((targetMib > g.balloonCapMib && targetMib >= g.targetMib) || (costMib > 0 && costMib > poolFree())) {
        refused += 1;
        continue;
      }
      const direction = Math.sign(targetMib - g.targetMib);
      if (direction !== 0) {
        if (g.lastDirection !== 0 && direction !== g.lastDirection) g.directionChanges += 1;
        g.lastDirection = direction;
      }
      g.targetMib = targetMib;
    }
    poolFreeMinMib = Math.min(poolFreeMinMib, poolFree());

    // 3. The guests: agents move toward their targets, programs run, the OOM killer strikes.
    const oomVms: string[] = [];
    for (const g of guests) {
      const m = g.spec.memoryMib;
      if (g.actualMib > g.targetMib) g.actualMib = g.targetMib;
      else g.actualMib = Math.min(g.targetMib, g.actualMib + physics.inflateMibPerRound);
      g.usedMib = demandMib.get(g.spec.name)!;
      if (g.usedMib + g.actualMib > m) {
        ooms += 1;
        g.ooms += 1;
        oomVms.push(g.spec.name);
        g.workload.kill();
        g.usedMib = (m * g.spec.workload.basePercent) / 100;
      }
      // PSI rises as available memory nears zero (reclaim, then swap, then stalls).
      const availableMib = availableOf(g);
      const squeeze = Math.max(0, Math.min(1, 1 - availableMib / (0.05 * m)));
      g.psiSomePercent = 0.7 * g.psiSomePercent + 0.3 * (80 * squeeze);
      g.psiFullPercent = 0.7 * g.psiFullPercent + 0.3 * (50 * squeeze * squeeze);

      // 4. Measurements on the truth, not on the reports.
      if (g.spec.workload.kind === 'lying') continue;
      honestRounds += 1;
      const underPressure = availableMib < (physics.pressurePercent / 100) * m;
      if (underPressure) {
        pressureRounds += 1;
        if (g.pressureStartRound === undefined) {
          g.pressureStartRound = round;
          episodes += 1;
        }
      } else if (g.pressureStartRound !== undefined) {
        const lengthRounds = round - g.pressureStartRound;
        reliefSum += lengthRounds;
        reliefMax = Math.max(reliefMax, lengthRounds);
        g.pressureStartRound = undefined;
      }
    }

    observe?.({ round, input, decision: result.decision, oomVms, poolFreeMib: poolFree() });
    const contenders = guests.filter((g) => scenario.contenders.includes(g.spec.name));
    const wants = (g: GuestSim): boolean => g.spec.workload.kind === 'lying' || availableOf(g) < (g.spec.settings.memoryBufferPercent / 100) * g.spec.memoryMib;
    if (contenders.length >= 2 && contenders.every(wants)) {
      contendedRounds += 1;
      for (const g of contenders) {
        g.givenSumMib += g.balloonCapMib - g.actualMib;
        g.givenRounds += 1;
      }
    }
  }

  const unrelieved = guests.filter((g) => g.pressureStartRound !== undefined).length;
  const closed = episodes - unrelieved;
  const givenMibPerWeight: Record<string, number> = {};
  const oomEventsByVm: Record<string, number> = {};
  for (const g of guests) {
    oomEventsByVm[g.spec.name] = g.ooms;
    if (scenario.contenders.includes(g.spec.name)) {
      givenMibPerWeight[g.spec.name] = g.givenSumMib / Math.max(1, g.givenRounds) / g.spec.settings.memoryWeight;
    }
  }
  const xs = scenario.contenders.map((n) => givenMibPerWeight[n] ?? 0);
  const sum = xs.reduce((a, b) => a + b, 0);
  const sumSq = xs.reduce((a, b) => a + b * b, 0);
  const changes = guests.map((g) => g.directionChanges);
  return {
    scenario: scenario.name,
    engine: policy.name,
    rounds: scenario.rounds,
    pressureEpisodes: episodes,
    reliefRoundsMean: closed > 0 ? reliefSum / closed : 0,
    reliefRoundsMax: reliefMax,
    unrelievedEpisodes: unrelieved,
    pressureRoundsPercent: honestRounds > 0 ? (100 * pressureRounds) / honestRounds : 0,
    oomEvents: ooms,
    directionChangesMeanPerVm: changes.reduce((a, b) => a + b, 0) / Math.max(1, changes.length),
    directionChangesMaxPerVm: Math.max(0, ...changes),
    oomEventsByVm,
    givenMibPerWeight,
    contendedRounds,
    fairnessJain: xs.length === 0 || sumSq === 0 ? Number.NaN : (sum * sum) / (xs.length * sumSq),
    invariantViolations: violations,
    refusedChanges: refused,
    poolFreeMinMib: poolFreeMinMib,
  };
}
