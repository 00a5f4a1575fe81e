// What the service reports as it works: counters for /metrics. Kept as an
// interface so the service does not depend on prom-client, and tests can
// pass a recording stub.

/** Counters the service feeds (HostMetrics implements them). */
export interface ServiceCounters {
  /** A guest session was established (Welcome sent). */
  countSession(vmName: string): void;
  /** A start or a balloon request was refused, by reason (e.g. pool_exhausted, unknown_vm, balloon_too_large). */
  countRefusal(reason: string): void;
  /** A guest sent something the protocol forbids, by ErrorCode name. */
  countProtocolError(code: string): void;
  /** A balloon target was sent to a guest, by its source (start, controlvm, policy, reclaim, rollback, payback). */
  countTargetChange?(vmName: string, source: string): void;
}

/** Counters that count nothing. */
export const NO_COUNTERS: ServiceCounters = Object.freeze({
  countSession() {},
  countRefusal() {},
  countProtocolError() {},
});
