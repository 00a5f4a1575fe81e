// When and how fast KSM should scan: a pure decision in the manner of oVirt
// MOM's KSM policy (mom-balloon.policy), whose constants we keep. MOM runs
// KSM under host memory pressure; we run it while page-fusion VMs run, and
// treat "hints say there is sharable memory the kernel has not merged yet" as
// the pressure that raises the scan rate. No I/O: ksm-controller.ts applies it.

/** MOM's constants (mom-balloon.policy): pages added/removed per decision, bounds, sleep baseline. */
export const MOM_KSM_POLICY = Object.freeze({
  /** Pages added to pages_to_scan per decision while there is work. */
  pagesBoost: 300,
  /** Pages removed from pages_to_scan per decision while there is none. */
  pagesDecay: 50,
  /** Bounds of pages_to_scan while KSM runs. */
  npagesMin: 64,
  npagesMax: 1250,
  /** sleep_millisecs for a 16 GiB host; smaller hosts sleep more, larger less. */
  sleepMsBaseline: 10,
  /** The host size sleepMsBaseline is for, in MiB. */
  baselineMemoryMib: 16 * 1024,
});

/** The policy's tunables (MOM_KSM_POLICY by default). */
export type KsmPolicy = typeof MOM_KSM_POLICY;

/** What the decision looks at. */
export interface KsmInputs {
  /** Running VMs with page fusion on. */
  fusionVmsRunning: number;
  /** MiB of mergeable regions that hints say are sharable (summed over VMs). */
  sharableMib: number;
  /** Of those, MiB the kernel has not merged yet (summed over VMs of unmergedMib). */
  unmergedMib: number;
  /** Host counters: pages_shared (distinct merged pages) and pages_sharing (pages saved). */
  pagesShared: number;
  pagesSharing: number;
  /** pages_to_scan now (the kernel's, or our last decision). */
  pagesToScan: number;
  /** The host's memory, in MiB: sets sleep_millisecs as MOM does. */
  memTotalMib: number;
}

/** The settings the host wants in /sys/kernel/mm/ksm. */
export interface KsmSettings {
  run: boolean;
  pagesToScan: number;
  sleepMillisecs: number;
}

/** A decision: drive KSM with these settings, or leave it as the host found it. */
export type KsmDecision =
  | { drive: false; reason: string }
  | { drive: true; settings: KsmSettings; unmergedMib: number; reason: string };

/**
 * MiB of one VM that hints call sharable and the kernel has not merged yet
 * (sharedMib from the guest's own ksm_merging_pages). Per VM, because merges
 * inside one guest must not hide another guest's unmerged pages.
 */
export function unmergedMib(sharableMib: number, sharedMib: number): number {
  return Math.max(0, sharableMib - sharedMib);
}

/** Decides what KSM should do now. */
export function decideKsm(inputs: KsmInputs, policy: KsmPolicy = MOM_KSM_POLICY): KsmDecision {
  if (inputs.fusionVmsRunning <= 0) return { drive: false, reason: 'no VM with page fusion runs' };
  const sleepMillisecs = Math.max(1, Math.round((policy.sleepMsBaseline * policy.baselineMemoryMib) / Math.max(1, inputs.memTotalMib)));
  const clamp = (n: number): number => Math.min(policy.npagesMax, Math.max(policy.npagesMin, n));
  const unmerged = Math.max(0, inputs.unmergedMib);
  if (unmerged > 0) {
    return {
      drive: true,
      settings: { run: true, pagesToScan: clamp(inputs.pagesToScan + policy.pagesBoost), sleepMillisecs },
      unmergedMib: unmerged,
      reason: `${unmerged.toFixed(1)} MiB sharable and not merged yet: scanning faster`,
    };
  }
  if (inputs.sharableMib <= 0 && inputs.pagesShared === 0) {
    // Nothing hinted as sharable and nothing merged to look after: ksmd
    // would only burn CPU.
    return { drive: true, settings: { run: false, pagesToScan: clamp(inputs.pagesToScan), sleepMillisecs }, unmergedMib: 0, reason: 'nothing sharable: KSM off' };
  }
  // All merged: keep scanning slowly, so pages un-shared by a write (and
  // written back to the same content) merge again.
  return {
    drive: true,
    settings: { run: true, pagesToScan: clamp(inputs.pagesToScan - policy.pagesDecay), sleepMillisecs },
    unmergedMib: 0,
    reason: 'all sharable memory merged: scanning slower',
  };
}
