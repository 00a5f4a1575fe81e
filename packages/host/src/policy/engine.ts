// The automatic balloon policy: a pure function from (state, input) to
// (state, decision). No clock, no I/O, no randomness: the host calls `step` on
// its timer and applies the changes; the simulator and the tests call it in a
// loop. The algorithm and the reasons for each rule are in README.md.
import { waterFillMib } from './allocate.js';
import { resolvePolicyConfig, type PolicyConfig } from './config.js';
import { grantCostMib, policyBalloonCapMib } from './limits.js';
import type {
  BalloonPolicy,
  PolicyDecision,
  PolicyInput,
  PolicyReasonCode,
  PolicyState,
  PolicyStepResult,
  PolicyTargetChange,
  PolicyVmInput,
  PolicyVmState,
} from './types.js';

/** The state before the first round: nothing remembered. */
export function initialPolicyState(): PolicyState {
  return { vms: {} };
}

/** Everything the round works out about one VM before deciding (internal). */
interface VmRound {
  readonly vm: PolicyVmInput;
  /** The VM's weight, at least 1 (a zero weight would divide by zero). */
  readonly weight: number;
  readonly balloonCapMib: number;
  readonly bufferMib: number;
  readonly midBandMib: number;
  readonly upperBandMib: number;
  readonly minChangeMib: number;
  readonly deflateStepMib: number;
  readonly inflateStepMib: number;
  /** The VM's remembered state after folding in this round's stats. */
  next: PolicyVmState;
  hasStats: boolean;
  critical: boolean;
  /** Available memory as the policy judges it (MiB); NaN without stats. */
  availableForNeedMib: number;
  availableLowMib: number;
  /** Memory wanted back this round (MiB, already bounded by the step). */
  needMib: number;
  /** The target as this round has moved it so far. */
  targetMib: number;
  reason: PolicyReasonCode | undefined;
  detail: string;
}

const roundMib = (x: number): number => Math.floor(x);

/**
 * Whether atMs lies within the last windowMs. A clock that went backwards
 * (a restarted host resuming saved state) ends the window instead of
 * stretching it.
 */
const within = (nowMs: number, atMs: number | null, windowMs: number): boolean => atMs !== null && nowMs >= atMs && nowMs - atMs < windowMs;

/** Folds the new stats into the VM's moving averages and pressure flag. */
function observe(config: PolicyConfig, prev: PolicyVmState | undefined, r: VmRound, nowMs: number): void {
  const stats = r.vm.stats;
  const fallback: PolicyVmState = prev ?? {
    availableEwmaMib: Number.NaN,
    psiSomeEwmaPercent: 0,
    pressured: false,
    lastDeflateAtMs: null,
    lastInflateAtMs: null,
    lastSqueezeAtMs: null,
    lastAvailableMib: null,
    spikeHeadroomMib: 0,
    observedAtMs: null,
    lastDirection: 0,
  };
  if (stats === undefined || !Number.isFinite(stats.availableMib)) {
    r.next = fallback;
    return;
  }
  r.hasStats = true;
  const w = config.statsEwmaWeight;
  // A sample seen again (the host's rounds outpace the guest's reports) is
  // not news: it is not folded into the averages twice, and what the balloon
  // did since it was first seen is counted on top of it, so a need granted on
  // it is not granted again and a donor's pinned inflate is not taken twice.
  const repeated = prev !== undefined && stats.sampledAtMs !== undefined && prev.sampleAtMs === stats.sampledAtMs;
  const actualAtSampleMib = repeated ? (prev.actualAtSampleMib ?? r.vm.actualMib) : r.vm.actualMib;
  const availableMib = Math.max(0, stats.availableMib + (actualAtSampleMib - r.vm.actualMib));
  const psiSome = Math.max(0, stats.psiSomeAvg10Percent || 0);
  const psiFull = Math.max(0, stats.psiFullAvg10Percent || 0);
  const availableEwmaMib = !Number.isFinite(fallback.availableEwmaMib)
    ? availableMib
    : repeated
      ? fallback.availableEwmaMib + (availableMib - (fallback.lastAvailableMib ?? availableMib))
      : fallback.availableEwmaMib + w * (availableMib - fallback.availableEwmaMib);
  const psiRisePercent = prev && !repeated ? psiSome - prev.psiSomeEwmaPercent : 0;
  const psiSomeEwmaPercent = !prev ? psiSome : repeated ? prev.psiSomeEwmaPercent : prev.psiSomeEwmaPercent + w * (psiSome - prev.psiSomeEwmaPercent);

  const criticalMib = (r.vm.memoryMib * config.criticalAvailablePercent) / 100;
  r.critical = availableMib < criticalMib || psiFull > config.psiFullCriticalPercent;
  // A critical reading acts at once; a merely low one must persist in the
  // average first, so one noisy sample does not move a balloon.
  r.availableForNeedMib = r.critical ? availableMib : availableEwmaMib;
  // For taking memory away, the guest gets the benefit of the doubt: the lower reading.
  r.availableLowMib = Math.min(availableMib, availableEwmaMib);

  const psiHigh = psiSomeEwmaPercent > config.psiSomeHighPercent || psiRisePercent > config.psiRiseDeltaPercent || psiFull > config.psiFullCriticalPercent;
  const enters = r.availableForNeedMib < r.bufferMib || psiHigh;
  const stays = fallback.pressured && (r.availableForNeedMib < r.midBandMib || psiSomeEwmaPercent > config.psiQuietPercent);
  const pressured = enters || stays;

  // Remember the largest fall of available memory in one round, decaying with
  // a half-life: a guest that has spiked keeps that much headroom when others
  // want memory, instead of being squeezed into its next spike's OOM.
  const elapsedMs = fallback.observedAtMs === null ? 0 : Math.max(0, nowMs - fallback.observedAtMs);
  const decay = 0.5 ** (elapsedMs / config.spikeHeadroomHalfLifeMs);
  // Only a new sample shows a fall; within one, available moves only with the balloon.
  const fallMib = fallback.lastAvailableMib === null || repeated ? 0 : fallback.lastAvailableMib - availableMib;
  const spikeHeadroomMib = Math.max(fallback.spikeHeadroomMib * decay, fallMib);

  let needMib = pressured ? Math.max(0, r.midBandMib - r.availableForNeedMib) : 0;
  if (psiHigh) needMib = Math.max(needMib, (r.vm.memoryMib * config.psiDeflateStepPercent) / 100);
  r.needMib = roundMib(Math.min(needMib, r.deflateStepMib));
  r.next = {
    ...fallback,
    availableEwmaMib,
    psiSomeEwmaPercent,
    pressured,
    lastAvailableMib: availableMib,
    spikeHeadroomMib,
    observedAtMs: nowMs,
    ...(stats.sampledAtMs === undefined ? {} : { sampleAtMs: stats.sampledAtMs, actualAtSampleMib }),
  };
}

function change(r: VmRound, targetMib: number, reason: PolicyReasonCode, detail: string): void {
  r.targetMib = targetMib;
  r.reason = reason;
  r.detail = detail;
}

/** One policy round (pure): the new state and the targets to send. */
export function policyStep(config: PolicyConfig, state: PolicyState, input: PolicyInput): PolicyStepResult {
  const rounds: VmRound[] = input.vms.map((vm) => {
    const pct = (p: number): number => (vm.memoryMib * p) / 100;
    const bufferMib = pct(vm.settings.memoryBufferPercent);
    const r: VmRound = {
      vm,
      weight: Math.max(1, vm.settings.memoryWeight || 1),
      balloonCapMib: policyBalloonCapMib(vm),
      bufferMib,
      midBandMib: bufferMib + pct(config.hysteresisPercent) / 2,
      upperBandMib: bufferMib + pct(config.hysteresisPercent),
      minChangeMib: Math.max(1, Math.ceil(pct(config.minChangePercent))),
      deflateStepMib: Math.max(1, roundMib(pct(config.maxDeflateStepPercent))),
      inflateStepMib: Math.max(1, roundMib(pct(config.maxInflateStepPercent))),
      next: undefined as unknown as PolicyVmState,
      hasStats: false,
      critical: false,
      availableForNeedMib: Number.NaN,
      availableLowMib: Number.NaN,
      needMib: 0,
      targetMib: vm.targetMib,
      reason: undefined,
      detail: '',
    };
    observe(config, state.vms[vm.name], r, input.nowMs);
    return r;
  });

  let freeMib = input.poolFreeMib;
  const costOf = (r: VmRound, newTargetMib: number): number => grantCostMib(r.targetMib, r.vm.actualMib, newTargetMib);

  // 1. Limits first: a target above the VM's largest legal balloon is a bug to
  // fix, not a preference, so it may spend the safety margin. A lowering the
  // pool cannot fund goes as far as it can (never below the limit).
  for (const r of rounds) {
    if (r.targetMib <= r.balloonCapMib) continue;
    const pinnedMib = Math.min(r.targetMib, r.vm.actualMib);
    const fundableMib = Math.max(0, freeMib);
    const newTargetMib = Math.max(r.balloonCapMib, pinnedMib - fundableMib);
    if (newTargetMib >= r.targetMib) continue;
    freeMib -= costOf(r, newTargetMib);
    change(r, newTargetMib, 'limit', `target ${r.vm.targetMib} MiB above the largest legal balloon ${r.balloonCapMib} MiB`);
  }

  // 2. Pressure: who claims memory back, and how much this round. A VM whose
  // balloon is already empty can be given nothing, but it still counts when
  // the claimants' shares are worked out.
  const baseOf = (r: VmRound): number => Math.min(r.targetMib, r.vm.actualMib);
  const claimants = rounds.filter((r) => r.hasStats && r.reason === undefined && (r.needMib > 0 || r.next.pressured));
  const totalNeedMib = claimants.reduce((s, r) => s + r.needMib, 0);
  const normalBudgetMib = Math.max(0, freeMib - config.safetyMarginMib);
  const contended = claimants.length >= 2 && totalNeedMib > normalBudgetMib;

  // Under contention each claimant is entitled to its weight's share of what
  // the claimants hold above their floors plus what can be given now. Stats are
  // advisory: a claimant at or above its share gets no grant while others
  // wait, and one well above it is squeezed back toward it, whatever it claims.
  const shareExcessMib = new Map<VmRound, number>();
  if (contended) {
    const aboveFloor = (r: VmRound): number => Math.max(0, r.balloonCapMib - baseOf(r));
    const fillMib = claimants.reduce((s, r) => s + aboveFloor(r), 0) + normalBudgetMib;
    const weightSum = claimants.reduce((s, r) => s + r.weight, 0);
    for (const r of claimants) {
      const shareMib = (fillMib * r.weight) / weightSum;
      shareExcessMib.set(r, aboveFloor(r) - shareMib);
    }
  }
  const othersWaiting = claimants.some((r) => r.needMib > 0 && (shareExcessMib.get(r) ?? 0) < 0);

  // 2a. Squeeze claimants above their share by more than the dead band.
  const squeezed = new Set<VmRound>();
  if (contended && othersWaiting) {
    for (const r of claimants) {
      const excessMib = shareExcessMib.get(r) ?? 0;
      const bandMib = (r.vm.memoryMib * config.hysteresisPercent) / 100;
      if (excessMib <= bandMib) continue;
      const takeMib = Math.min(roundMib(excessMib - bandMib / 2), r.inflateStepMib, r.balloonCapMib - r.targetMib);
      if (takeMib < r.minChangeMib) continue;
      squeezed.add(r);
      change(r, r.targetMib + takeMib, 'share', `claims pressure but holds ${roundMib(excessMib)} MiB above its weight's share: take ${takeMib} MiB`);
    }
  }

  const wantOf = (r: VmRound): number => {
    if (squeezed.has(r)) return 0;
    // A VM squeezed lately gets nothing back for a while: without this hold,
    // a guest claiming pressure forever would take back what it just gave.
    if (within(input.nowMs, r.next.lastSqueezeAtMs, config.shareHoldMs)) return 0;
    const want = Math.min(r.needMib, baseOf(r));
    // Skip grants too small to be worth a balloon operation, unless they empty the balloon.
    if (want < r.minChangeMib && want !== baseOf(r)) return 0;
    const excess = shareExcessMib.get(r);
    if (excess === undefined || !othersWaiting) return want;
    return Math.min(want, Math.max(0, roundMib(-excess)));
  };
  const grant = (budgetMib: number, eligible: readonly VmRound[]): void => {
    const amounts = waterFillMib(
      budgetMib,
      eligible.map((r) => ({ capMib: wantOf(r), shareWeight: r.weight })),
    );
    eligible.forEach((r, i) => {
      const giveMib = amounts[i]!;
      if (giveMib <= 0) return;
      const newTargetMib = baseOf(r) - giveMib;
      freeMib -= costOf(r, newTargetMib);
      r.needMib -= giveMib;
      const reading = r.critical
        ? `critical, available ${Math.round(r.availableForNeedMib)} MiB`
        : `available ${Math.round(r.availableForNeedMib)} MiB, buffer ${Math.round(r.bufferMib)} MiB`;
      change(r, newTargetMib, 'pressure', `${reading}: give back ${giveMib} MiB`);
    });
  };
  // 2b. Free quota above the safety margin, by weight (within shares under contention).
  grant(normalBudgetMib, claimants);
  // 2c. Critical guests may spend the margin itself: that is what it is for.
  grant(
    Math.max(0, freeMib),
    claimants.filter((r) => r.critical && r.needMib > 0),
  );

  // 4. Reclaim from guests with surplus, to fund what is still wanted and to
  // refill the safety margin. Memory already on its way (targets above what
  // the guests have pinned) counts, so a slow guest does not cause over-reclaim.
  // Only what could still be given counts: a guest with an empty balloon can get nothing more.
  const unmetDemandMib = claimants.reduce((s, r) => s + Math.max(0, Math.min(r.needMib, baseOf(r))), 0);
  const pendingMib = rounds.reduce((s, r) => s + Math.max(0, r.targetMib - r.vm.actualMib), 0);
  const marginShortMib = Math.max(0, config.safetyMarginMib - freeMib);
  const reclaimMib = unmetDemandMib + marginShortMib - pendingMib;
  if (reclaimMib > 0) {
    const donors: { r: VmRound; surplusMib: number; capMib: number }[] = [];
    for (const r of rounds) {
      if (!r.hasStats || r.reason !== undefined || r.next.pressured || squeezed.has(r)) continue;
      if (r.next.psiSomeEwmaPercent > config.psiQuietPercent) continue;
      if (within(input.nowMs, r.next.lastDeflateAtMs, config.inflateCooldownMs)) continue;
      // Hysteresis: to refill the margin, take only what lies above buffer +
      // band, so a guest left there must lose a whole band before it counts as
      // pressured again. For a guest under pressure, take further into the band
      // (not as far as mid-band, where a deflate leaves a guest, or the two
      // would trade memory back and forth): otherwise guests idling inside
      // the band would watch it starve.
      const floorMib = unmetDemandMib > 0 ? r.bufferMib + ((r.upperBandMib - r.bufferMib) * config.reclaimFloorBandPercent) / 100 : r.upperBandMib;
      const pendingOwnMib = Math.max(0, r.targetMib - r.vm.actualMib);
      const availableMib = r.availableLowMib - pendingOwnMib;
      const surplusMib = availableMib - Math.max(floorMib, r.next.spikeHeadroomMib + (floorMib - r.bufferMib));
      const capMib = roundMib(Math.min(surplusMib, r.inflateStepMib, r.balloonCapMib - r.targetMib));
      if (capMib < r.minChangeMib) continue;
      donors.push({ r, surplusMib, capMib });
    }
    // The most surplus per unit of weight gives the most.
    const amounts = waterFillMib(
      reclaimMib,
      donors.map((d) => ({ capMib: d.capMib, shareWeight: d.surplusMib / d.r.weight })),
    );
    donors.forEach((d, i) => {
      let takeMib = amounts[i]!;
      if (takeMib <= 0) return;
      takeMib = Math.max(takeMib, Math.min(d.r.minChangeMib, d.capMib));
      const why = unmetDemandMib > 0 ? 'reclaim' : 'margin';
      change(
        d.r,
        d.r.targetMib + takeMib,
        why,
        `available ${Math.round(d.r.availableLowMib)} MiB above buffer ${Math.round(d.r.bufferMib)} MiB: take ${takeMib} MiB`,
      );
    });
  }

  // 5. Relax: quota idle in the pool helps no one, while headroom inside a
  // guest absorbs its next spike without waiting for a round. Beyond the
  // margin and a reserve kept for quick grants, hand it back by weight, gently,
  // and never to a guest whose balloon grew lately (that would oscillate).
  const relaxMib = Math.max(0, freeMib - config.safetyMarginMib - config.relaxReserveMib);
  if (unmetDemandMib === 0 && relaxMib > 0) {
    const relaxers = rounds.filter((r) => {
      if (!r.hasStats || r.reason !== undefined || baseOf(r) <= 0) return false;
      return !within(input.nowMs, r.next.lastInflateAtMs, config.inflateCooldownMs);
    });
    const amounts = waterFillMib(
      relaxMib,
      relaxers.map((r) => ({ capMib: Math.min(baseOf(r), r.inflateStepMib), shareWeight: r.weight })),
    );
    relaxers.forEach((r, i) => {
      const giveMib = amounts[i]!;
      if (giveMib < r.minChangeMib && giveMib !== baseOf(r)) return;
      const newTargetMib = baseOf(r) - giveMib;
      freeMib -= costOf(r, newTargetMib);
      change(r, newTargetMib, 'relax', `pool has ${Math.round(relaxMib)} MiB idle beyond its reserve: give back ${giveMib} MiB`);
    });
  }

  // 6. Emit the changes and remember directions.
  const changes: PolicyTargetChange[] = [];
  const vms: Record<string, PolicyVmState> = {};
  for (const r of rounds) {
    let next = r.next;
    if (r.reason !== undefined && r.targetMib !== r.vm.targetMib) {
      const direction = r.targetMib > r.vm.targetMib ? 1 : -1;
      next = {
        ...next,
        lastDirection: direction,
        lastDeflateAtMs: direction < 0 ? input.nowMs : next.lastDeflateAtMs,
        lastInflateAtMs: direction > 0 ? input.nowMs : next.lastInflateAtMs,
        lastSqueezeAtMs: r.reason === 'share' ? input.nowMs : next.lastSqueezeAtMs,
      };
      changes.push({
        name: r.vm.name,
        previousTargetMib: r.vm.targetMib,
        targetMib: r.targetMib,
        reason: r.reason,
        detail: r.detail,
      });
    }
    vms[r.vm.name] = next;
  }
  const decision: PolicyDecision = { changes, poolFreeAfterMib: freeMib, unmetDemandMib };
  return { state: { vms }, decision };
}

/** Our policy behind the interface the simulator drives. */
export function ourPolicy(overrides: Partial<PolicyConfig> = {}): BalloonPolicy<PolicyState> {
  const config = resolvePolicyConfig(overrides);
  return {
    name: 'memballoon',
    initialState: initialPolicyState,
    step: (state, input) => policyStep(config, state, input),
  };
}

/** A policy engine that carries its own state, for a host calling it on a timer. */
export interface PolicyEngine {
  readonly config: PolicyConfig;
  /** Runs one round; remembers the state for the next. */
  step(input: PolicyInput): PolicyDecision;
  /** The state carried between rounds (plain data). */
  readonly state: PolicyState;
}

/** Makes a stateful engine around the pure `policyStep`. */
export function createPolicyEngine(overrides: Partial<PolicyConfig> = {}, state: PolicyState = initialPolicyState()): PolicyEngine {
  const config = resolvePolicyConfig(overrides);
  let current = state;
  return {
    config,
    get state() {
      return current;
    },
    step(input) {
      const result = policyStep(config, current, input);
      current = result.state;
      return result.decision;
    },
  };
}
