// The policy's constants, in one frozen object. Each is a knob the host may
// override from its own config; the defaults and the reasons for them are in
// README.md next to this file.

/** Tunables of the automatic balloon policy (units in every name). */
export interface PolicyConfig {
  /** How often the host should call `step` (the engine itself never reads a clock). */
  readonly policyIntervalMs: number;
  /** Pool memory the policy keeps free: it reclaims to restore it and only spends it on critical pressure. */
  readonly safetyMarginMib: number;
  /** Largest deflate (memory given back) per VM per round, in % of its memory. */
  readonly maxDeflateStepPercent: number;
  /** Largest inflate (memory taken) per VM per round, in % of its memory. */
  readonly maxInflateStepPercent: number;
  /** Changes smaller than this % of the VM's memory are skipped (MOM: 0.25 %). */
  readonly minChangePercent: number;
  /** Width of the dead band above the buffer, in % of memory: inflate only above buffer + band. */
  readonly hysteresisPercent: number;
  /** For a guest under pressure, donors give down to buffer + this % of the band (refilling the margin stops at the band's top). */
  readonly reclaimFloorBandPercent: number;
  /** Available below this % of memory is critical: the deflate may spend the safety margin. */
  readonly criticalAvailablePercent: number;
  /** PSI "some" avg10 above this means pressure even with memory available. */
  readonly psiSomeHighPercent: number;
  /** A rise of PSI "some" avg10 by this many points in one round means pressure. */
  readonly psiRiseDeltaPercent: number;
  /** PSI "some" avg10 at or below this is quiet: only then may a VM's balloon grow. */
  readonly psiQuietPercent: number;
  /** PSI "full" avg10 above this is critical (tasks fully stalled on memory). */
  readonly psiFullCriticalPercent: number;
  /** Memory given to a VM whose only symptom is PSI, in % of its memory. */
  readonly psiDeflateStepPercent: number;
  /** Weight of the newest sample in the moving averages (0 < w ≤ 1). */
  readonly statsEwmaWeight: number;
  /** After a deflate, a VM's balloon is not grown again for this long. */
  readonly inflateCooldownMs: number;
  /** After a VM is squeezed toward its share, it is granted nothing for this long. */
  readonly shareHoldMs: number;
  /** Free quota above safetyMarginMib + this is handed back to guests as headroom (a spike then finds it inside the guest). */
  readonly relaxReserveMib: number;
  /** Half-life of the remembered largest fall of available memory (spike headroom). */
  readonly spikeHeadroomHalfLifeMs: number;
}

/** The defaults (see README.md for why each has its value). */
export const DEFAULT_POLICY_CONFIG: PolicyConfig = Object.freeze({
  policyIntervalMs: 1000,
  safetyMarginMib: 256,
  maxDeflateStepPercent: 10,
  maxInflateStepPercent: 5,
  minChangePercent: 0.25,
  hysteresisPercent: 5,
  reclaimFloorBandPercent: 75,
  criticalAvailablePercent: 5,
  psiSomeHighPercent: 20,
  psiRiseDeltaPercent: 5,
  psiQuietPercent: 2,
  psiFullCriticalPercent: 10,
  psiDeflateStepPercent: 5,
  statsEwmaWeight: 0.3,
  inflateCooldownMs: 10_000,
  shareHoldMs: 30_000,
  relaxReserveMib: 1024,
  spikeHeadroomHalfLifeMs: 600_000,
});

/** Merges overrides into the defaults and checks the ranges; throws RangeError on nonsense. */
export function resolvePolicyConfig(overrides: Partial<PolicyConfig> = {}): PolicyConfig {
  const config = { ...DEFAULT_POLICY_CONFIG, ...overrides };
  for (const [key, value] of Object.entries(config)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`policy config ${key} must be a finite number >= 0, got ${String(value)}`);
    }
  }
  if (config.statsEwmaWeight <= 0 || config.statsEwmaWeight > 1) {
    throw new RangeError(`policy config statsEwmaWeight must be in (0, 1], got ${config.statsEwmaWeight}`);
  }
  if (config.policyIntervalMs <= 0) {
    throw new RangeError(`policy config policyIntervalMs must be > 0, got ${config.policyIntervalMs}`);
  }
  return Object.freeze(config);
}
