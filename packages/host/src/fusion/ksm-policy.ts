// When and how fast KSM should scan: a pure decision in the manner of oVirt
// MOM's KSM policy (mom-balloon.policy), whose constants we keep. MOM runs
// KSM under host memory pressure; we run it while page-fusion VMs run, and
// treat "hints say there is sharable memory the kernel has not merged yet" as
// the pressure that raises the scan rate. No I/O: ksm-controller.ts applies it.
//
// Beyond MOM: the hints know which memory is worth scanning and how much of
// it is unmerged, so when new candidates appear the policy does not ramp up
// by 300 pages a second. It bursts: ksmd scans without sleeping, at nice 0,
// for a bounded number of full scans (KSM merges a page on its second scan:
// the first only records its checksum), then falls back to MOM's rate. The
// CPU a merge costs is about the same either way (two scans of the same
// pages); the burst spends it at once instead of over seconds.
import { BYTES_PER_MIB } from '@memballoon/protocol';

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

/** The hint-steered burst's constants (see the header). */
export const HINT_BURST_POLICY = Object.freeze({
  /** sleep_millisecs while bursting: none, ksmd scans back to back. */
  burstSleepMs: 0,
  /** Bounds of pages_to_scan while bursting: the batch between checks of the settings. */
  burstPagesMin: 1250,
  burstPagesMax: 65_536,
  /** ksmd's nice while bursting (the kernel starts it at 5). */
  burstKsmdNice: 0,
  /** Full scans a burst may last: two merge what is stable, one more covers pages that changed once. */
  burstMaxFullScans: 3,
  /** Longest burst, in ms, whatever else is mergeable on the machine. */
  burstMaxMs: 5_000,
});

/** The policy's tunables: MOM's constants and the burst's. */
export type KsmPolicy = { readonly [K in keyof typeof MOM_KSM_POLICY | keyof typeof HINT_BURST_POLICY]: number };

/** The default policy: MOM's constants, and a burst when hints show unmerged candidates. */
export const DEFAULT_KSM_POLICY: KsmPolicy = Object.freeze({ ...MOM_KSM_POLICY, ...HINT_BURST_POLICY });

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
  /** Whether a burst may run now (the controller's budget of full scans and time is not spent); default false. */
  burstAllowed?: boolean;
  /** Page size, in bytes (default 4096): sizes the burst's batch. */
  pageSizeBytes?: number;
}

/** The settings the host wants in /sys/kernel/mm/ksm. */
export interface KsmSettings {
  run: boolean;
  pagesToScan: number;
  sleepMillisecs: number;
  /** ksmd's nice; absent: as the driver found it. */
  ksmdNice?: number;
}

/** A decision: drive KSM with these settings, or leave it as the host found it. */
export type KsmDecision = { drive: false; reason: string } | { drive: true; settings: KsmSettings; unmergedMib: number; reason: string; burst?: boolean };

/**
 * MiB of one VM that hints call sharable and the kernel has not merged yet
 * (sharedMib from the guest's own ksm_merging_pages). Per VM, because merges
 * inside one guest must not hide another guest's unmerged pages.
 */
export function unmergedMib(sharableMib: number, sharedMib: number): number {
  return Math.max(0, sharableMib - sharedMib);
}

/** Decides what KSM should do now. */
export function decideKsm(inputs: KsmInputs, policy: KsmPolicy = DEFAULT_KSM_POLICY): KsmDecision {
  if (inputs.fusionVmsRunning <= 0) return { drive: false, reason: 'no VM with page fusion runs' };
  const sleepMillisecs = Math.max(1, Math.round((policy.sleepMsBaseline * policy.baselineMemoryMib) / Math.max(1, inputs.memTotalMib)));
  const clamp = (n: number): number => Math.min(policy.npagesMax, Math.max(policy.npagesMin, n));
  const unmerged = Math.max(0, inputs.unmergedMib);
  if (unmerged > 0 && inputs.burstAllowed) {
    // A batch of about the unmerged candidates: ksmd looks at its settings
    // between batches, so a batch must not be so large that the end of the
    // burst waits long for it.
    const unmergedPages = Math.ceil((unmerged * BYTES_PER_MIB) / (inputs.pageSizeBytes ?? 4096));
    const pagesToScan = Math.min(policy.burstPagesMax, Math.max(policy.burstPagesMin, unmergedPages));
    return {
      drive: true,
      settings: { run: true, pagesToScan, sleepMillisecs: policy.burstSleepMs, ksmdNice: policy.burstKsmdNice },
      unmergedMib: unmerged,
      reason: `${unmerged.toFixed(1)} MiB sharable and not merged yet: scanning in a burst`,
      burst: true,
    };
  }
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
    return {
      drive: true,
      settings: { run: false, pagesToScan: clamp(inputs.pagesToScan), sleepMillisecs },
      unmergedMib: 0,
      reason: 'nothing sharable: KSM off',
    };
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
