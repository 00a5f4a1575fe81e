// What goes into a policy round and what comes out. Plain data, no classes,
// so the host can log a decision as JSON and a test can build an input by hand.

/** A VM's policy settings (the names of PolicyView in ../service/views.ts). */
export interface PolicyVmSettings {
  /** What the guest always keeps: the balloon never grows past memoryMib - memoryMinMib. */
  readonly memoryMinMib: number;
  /** The largest balloon the policy may set (literal: 0 means the policy never inflates it). */
  readonly balloonMaxMib: number;
  /** Share when memory is short (1-10000). */
  readonly memoryWeight: number;
  /** Memory the policy tries to leave available inside the guest, in % of its memory. */
  readonly memoryBufferPercent: number;
}

/** The guest statistics the policy reads (a subset of GuestStatsView). Advisory: a guest can lie. */
export interface PolicyGuestStats {
  readonly availableMib: number;
  readonly freeMib: number;
  readonly cacheMib: number;
  readonly psiSomeAvg10Percent: number;
  readonly psiFullAvg10Percent: number;
  /**
   * When the sample was taken or received (ms, any clock). Optional: when
   * given, a round that sees the same sample again (the policy runs faster
   * than guests report) does not count it twice; see README.md.
   */
  readonly sampledAtMs?: number;
}

/** One running VM in auto mode, as the host sees it this round. */
export interface PolicyVmInput {
  readonly name: string;
  readonly memoryMib: number;
  /** The balloon target last sent to the guest. */
  readonly targetMib: number;
  /** The balloon the guest has really pinned. */
  readonly actualMib: number;
  readonly settings: PolicyVmSettings;
  /** Latest stats; undefined until the guest has reported any. */
  readonly stats: PolicyGuestStats | undefined;
}

/** One policy round's input. */
export interface PolicyInput {
  /** Monotonic time given by the caller (ms); the engine has no clock of its own. */
  readonly nowMs: number;
  /** The pool size P. */
  readonly poolSizeMib: number;
  /**
   * The pool's free quota: P minus what all running VMs hold (manual ones too),
   * where a VM holds memoryMib - min(targetMib, actualMib).
   */
  readonly poolFreeMib: number;
  /** The running VMs in auto mode (manual VMs only appear through poolFreeMib). */
  readonly vms: readonly PolicyVmInput[];
}

/** Why a target changed (a closed set, for metrics), with a human sentence for logs. */
export type PolicyReasonCode =
  | 'pressure' // the guest is under memory pressure: deflate, give memory back
  | 'limit' // the current target breaks the VM's minimum, balloon max or the 90 % rule
  | 'reclaim' // the guest has memory above its buffer and someone needs it
  | 'margin' // the pool's safety margin is short: refill it from guests with surplus
  | 'share' // the guest claims pressure but holds more than its weight's share
  | 'relax'; // the pool has idle free quota beyond its reserve: hand it back as headroom

/** One changed target. */
export interface PolicyTargetChange {
  readonly name: string;
  readonly previousTargetMib: number;
  readonly targetMib: number;
  readonly reason: PolicyReasonCode;
  /** One line for the log, e.g. "available 80 MiB < buffer 204 MiB: deflate 102 MiB". */
  readonly detail: string;
}

/** One round's output: only the VMs whose target changes. */
export interface PolicyDecision {
  readonly changes: readonly PolicyTargetChange[];
  /** Pool free quota after the changes are granted (never negative unless it was already). */
  readonly poolFreeAfterMib: number;
  /** Memory asked for by pressured guests that this round could not fund. */
  readonly unmetDemandMib: number;
}

/** What the engine remembers about one VM between rounds. */
export interface PolicyVmState {
  /** Moving average of available memory (MiB). */
  readonly availableEwmaMib: number;
  /** Moving average of PSI some avg10 (%). */
  readonly psiSomeEwmaPercent: number;
  /** Whether the VM is in the pressured state (hysteresis: entered below buffer, left above mid-band). */
  readonly pressured: boolean;
  /** When its balloon was last deflated by the policy (ms, caller's clock); null if never. */
  readonly lastDeflateAtMs: number | null;
  /** When its balloon was last grown by the policy (ms); null if never. */
  readonly lastInflateAtMs: number | null;
  /** When it was last squeezed toward its weight's share (ms); null if never. */
  readonly lastSqueezeAtMs: number | null;
  /** The latest raw available reading (MiB), to see how fast it falls. */
  readonly lastAvailableMib: number | null;
  /** The largest recent one-round fall of available memory (MiB), decaying: headroom the guest has shown it needs. */
  readonly spikeHeadroomMib: number;
  /** When spikeHeadroomMib was last updated (ms), for its decay. */
  readonly observedAtMs: number | null;
  /** Direction of the last change: +1 inflate, -1 deflate, 0 none yet. */
  readonly lastDirection: -1 | 0 | 1;
  /** sampledAtMs of the newest stats folded in (absent: samples are not told apart). */
  readonly sampleAtMs?: number;
  /** The balloon's actual size when that sample was first seen: its moves since then change what is available. */
  readonly actualAtSampleMib?: number;
}

/** What the engine carries between rounds, keyed by VM name. Plain data: serialisable. */
export interface PolicyState {
  readonly vms: Readonly<Record<string, PolicyVmState>>;
}

/** The result of one round. */
export interface PolicyStepResult<S = PolicyState> {
  readonly state: S;
  readonly decision: PolicyDecision;
}

/** Any balloon policy the simulator can drive: ours and the baselines. */
export interface BalloonPolicy<S> {
  readonly name: string;
  initialState(): S;
  step(state: S, input: PolicyInput): PolicyStepResult<S>;
}
