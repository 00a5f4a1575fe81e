// `/metrics`: the host's state in the Prometheus text format, on prom-client
// with a registry of our own (the global one belongs to whoever embeds us).
//
// Gauges are not kept up to date as things happen: every scrape takes one
// snapshot and sets them all from it, so a scrape is consistent (the pool adds
// up) and VMs that went away vanish from the output. Sizes are exported in
// bytes and PSI in ratios (0-1), as Prometheus' naming conventions ask; the
// default process metrics keep their standard unprefixed names (process_*,
// nodejs_*) so the usual Node dashboards work on them.
import { BALLOON_STATES, SHORTFALL_REASONS } from '@memballoon/protocol';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { HostView, VmView } from '../service/views.js';
import type { MetricsSnapshot } from './query.js';
import { BYTES_PER_MIB } from '@memballoon/protocol';

/** A per-VM gauge: its name, help text, and how to read it from a VM (undefined: no sample). */
interface VmGaugeSpec {
  name: string;
  help: string;
  read: (vm: VmView) => number | undefined;
}

const mib = (value: number | undefined): number | undefined => (value === undefined ? undefined : value * BYTES_PER_MIB);
const ratio = (percent: number | undefined): number | undefined => (percent === undefined ? undefined : percent / 100);

const VM_GAUGES: readonly VmGaugeSpec[] = [
  { name: 'memballoon_vm_running', help: 'Whether the VM is running (1) or powered off (0).', read: (vm) => (vm.state === 'running' ? 1 : 0) },
  { name: 'memballoon_vm_memory_bytes', help: 'Memory configured for the VM.', read: (vm) => mib(vm.memoryMib) },
  { name: 'memballoon_vm_held_bytes', help: 'Memory the running VM holds of the pool: memory - min(target, actual).', read: (vm) => mib(vm.heldMib) },
  { name: 'memballoon_vm_balloon_target_bytes', help: 'Balloon size the host asks of the guest.', read: (vm) => mib(vm.balloon?.targetMib) },
  { name: 'memballoon_vm_balloon_actual_bytes', help: 'Balloon size the guest reports holding.', read: (vm) => mib(vm.balloon?.actualMib) },
  { name: 'memballoon_vm_balloon_locked_bytes', help: 'Part of the balloon the guest has pinned (locked in RAM).', read: (vm) => mib(vm.balloon?.lockedMib) },
  {
    name: 'memballoon_vm_balloon_handed_off_bytes',
    help: "Part of the balloon handed off to the VM's cgroup limit: released by the guest, free on the host.",
    read: (vm) => mib(vm.balloon?.handedOffMib),
  },
  { name: 'memballoon_vm_guest_total_bytes', help: 'Total memory as the guest measures it.', read: (vm) => mib(vm.stats?.totalMib) },
  { name: 'memballoon_vm_guest_available_bytes', help: 'Memory available to the guest without swapping.', read: (vm) => mib(vm.stats?.availableMib) },
  { name: 'memballoon_vm_guest_free_bytes', help: 'Free memory in the guest.', read: (vm) => mib(vm.stats?.freeMib) },
  { name: 'memballoon_vm_guest_cache_bytes', help: 'Disk caches in the guest.', read: (vm) => mib(vm.stats?.cacheMib) },
  {
    name: 'memballoon_vm_shared_bytes',
    help: 'Page fusion: memory of the VM merged with identical pages of other guests.',
    read: (vm) => mib(vm.sharedMib ?? vm.stats?.sharedMib),
  },
  {
    name: 'memballoon_vm_pressure_some_ratio',
    help: 'Memory pressure in the guest: share of time some task stalled on memory (PSI some avg10).',
    read: (vm) => ratio(vm.stats?.psiSomeAvg10Percent),
  },
  {
    name: 'memballoon_vm_pressure_full_ratio',
    help: 'Memory pressure in the guest: share of time all tasks stalled on memory (PSI full avg10).',
    read: (vm) => ratio(vm.stats?.psiFullAvg10Percent),
  },
  {
    name: 'memballoon_vm_balloon_shortfall_bytes',
    help: 'How far the balloon stopped short of its target (target - actual while its state is short, else 0).',
    read: (vm) => (vm.balloon ? mib(vm.balloon.state === 'short' ? Math.max(0, vm.balloon.targetMib - vm.balloon.actualMib) : 0) : undefined),
  },
  {
    name: 'memballoon_vm_last_stats_timestamp_seconds',
    // Alert on `time() - memballoon_vm_last_stats_timestamp_seconds > 30`: a guest that stopped reporting.
    help: 'When the host last received statistics from the guest (Unix time in seconds).',
    read: (vm) => (vm.stats ? vm.stats.receivedAtMs / 1000 : undefined),
  },
];

/** Balloon states exported as one 0/1 series each (the protocol's, without 'unspecified'). */
const STATE_VALUES = BALLOON_STATES.filter((s) => s !== 'unspecified');
/** Shortfall reasons exported as one 0/1 series each (the protocol's, without 'none'). */
const REASON_VALUES = SHORTFALL_REASONS.filter((r) => r !== 'none');

/** A host-wide gauge: its name, help text, and how to read it from the host view. */
interface HostGaugeSpec {
  name: string;
  help: string;
  read: (host: HostView) => number;
}

const HOST_GAUGES: readonly HostGaugeSpec[] = [
  { name: 'memballoon_pool_size_bytes', help: 'Size of the memory pool for guests.', read: (h) => h.pool.sizeMib * BYTES_PER_MIB },
  { name: 'memballoon_pool_held_bytes', help: 'Pool memory held by running VMs.', read: (h) => h.pool.heldMib * BYTES_PER_MIB },
  {
    name: 'memballoon_pool_reclaimed_bytes',
    help: 'Memory reclaimed by balloons: sum of min(target, actual) over running VMs.',
    read: (h) => h.pool.reclaimedMib * BYTES_PER_MIB,
  },
  { name: 'memballoon_pool_free_bytes', help: 'Pool memory not held by any VM.', read: (h) => h.pool.freeMib * BYTES_PER_MIB },
  { name: 'memballoon_host_shared_bytes', help: 'Page fusion: memory merged across guests.', read: (h) => h.sharedMib * BYTES_PER_MIB },
  { name: 'memballoon_host_sharable_bytes', help: 'Page fusion: memory hinted as identical across guests.', read: (h) => h.sharableMib * BYTES_PER_MIB },
  { name: 'memballoon_vms_registered', help: 'VMs in the registry.', read: (h) => h.vmsRegistered },
  { name: 'memballoon_vms_running', help: 'VMs with a guest session.', read: (h) => h.vmsRunning },
  {
    name: 'memballoon_reclaim_physical',
    help: 'Whether balloons are handed off to cgroup limits (1) or the pool is a budget only (0).',
    read: (h) => (h.reclaim === 'physical' ? 1 : 0),
  },
];

const MISNAMED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** The host's Prometheus metrics: gauges read from a snapshot at scrape time, counters fed by the service. */
export class HostMetrics {
  /** The registry behind `/metrics` (our own, never prom-client's global one). */
  readonly registry = new Registry();
  /** The Content-Type header to answer `/metrics` with. */
  readonly contentType: string;

  readonly #snapshot: () => MetricsSnapshot;
  readonly #vmGauges: ReadonlyArray<{ spec: VmGaugeSpec; gauge: Gauge<'vm'> }>;
  readonly #hostGauges: ReadonlyArray<{ spec: HostGaugeSpec; gauge: Gauge }>;
  readonly #sessions: Counter<'vm'>;
  readonly #buildInfo: Gauge<'version' | 'nodejs_version'>;
  readonly #balloonState: Gauge<'vm' | 'state'>;
  readonly #shortfallReason: Gauge<'vm' | 'reason'>;
  readonly #targetChanges: Counter<'vm' | 'source'>;
  /**
   * Targets sent since the last scrape, by VM and source. A target is sent
   * per PUT and per policy step; prom-client hashes the labels of every
   * inc(), which showed in the host's profile at 1,000 guests, so the counts
   * add up here and go to the counter when it is collected.
   */
  readonly #pendingTargetChanges = new Map<string, Map<string, number>>();
  readonly #refusals: Counter<'reason'>;
  readonly #protocolErrors: Counter<'code'>;

  constructor(snapshot: () => MetricsSnapshot) {
    this.#snapshot = snapshot;
    this.contentType = this.registry.contentType;
    const registers = [this.registry];
    this.#vmGauges = VM_GAUGES.map((spec) => ({
      spec,
      gauge: new Gauge({ name: spec.name, help: spec.help, labelNames: ['vm'] as const, registers }),
    }));
    this.#hostGauges = HOST_GAUGES.map((spec) => ({ spec, gauge: new Gauge({ name: spec.name, help: spec.help, registers }) }));
    this.#sessions = new Counter({ name: 'memballoon_sessions_total', help: 'Guest sessions established.', labelNames: ['vm'] as const, registers });
    this.#buildInfo = new Gauge({
      name: 'memballoon_build_info',
      help: 'Always 1; its labels say which host runs: version (of memballoon) and nodejs_version.',
      labelNames: ['version', 'nodejs_version'] as const,
      registers,
    });
    this.#balloonState = new Gauge({
      name: 'memballoon_vm_balloon_state',
      help: `State of each running VM's balloon: 1 for the current state, 0 for the others (state: ${STATE_VALUES.join(', ')}).`,
      labelNames: ['vm', 'state'] as const,
      registers,
    });
    this.#shortfallReason = new Gauge({
      name: 'memballoon_vm_balloon_shortfall_reason',
      help: `Why each running VM's balloon stopped short of its target: 1 for the reason the guest gave, 0 for the others (reason: ${REASON_VALUES.join(', ')}).`,
      labelNames: ['vm', 'reason'] as const,
      registers,
    });
    const pendingTargetChanges = this.#pendingTargetChanges;
    this.#targetChanges = new Counter({
      name: 'memballoon_balloon_target_changes_total',
      help: 'Balloon targets the host sent to guests, by VM and by source (start, controlvm, policy, reclaim, rollback, payback).',
      labelNames: ['vm', 'source'] as const,
      registers,
      // Targets counted since the last scrape go in now.
      collect() {
        for (const [vm, bySource] of pendingTargetChanges) for (const [source, count] of bySource) this.inc({ vm, source }, count);
        pendingTargetChanges.clear();
      },
    });
    this.#refusals = new Counter({
      name: 'memballoon_refusals_total',
      help: 'Requests the host refused, by reason: balloon targets and guest starts (e.g. balloon_too_large, not_running, pool_exhausted, auth_failed) and admin API requests (unauthorized: no or a wrong token; forbidden: a change with the read-only token).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.#protocolErrors = new Counter({
      name: 'memballoon_protocol_errors_total',
      help: 'Protocol errors on guest sessions, by error code.',
      labelNames: ['code'] as const,
      registers,
    });
    collectDefaultMetrics({ register: this.registry });
    // These three are gauges with a counter's `_total` suffix, which promtool
    // rejects; their per-type siblings (nodejs_active_handles{type} …) remain.
    for (const name of MISNAMED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
  }

  /** Counts a guest session that was established for a VM. */
  countSession(vmName: string): void {
    this.#sessions.inc({ vm: vmName });
  }

  /** Counts a balloon target sent to a guest, by where it came from. */
  countTargetChange(vmName: string, source: string): void {
    let bySource = this.#pendingTargetChanges.get(vmName);
    if (bySource === undefined) {
      bySource = new Map();
      this.#pendingTargetChanges.set(vmName, bySource);
    }
    bySource.set(source, (bySource.get(source) ?? 0) + 1);
  }

  /** Counts a refusal (e.g. `balloon_too_large`, `pool_exhausted`). */
  countRefusal(reason: string): void {
    this.#refusals.inc({ reason });
  }

  /** Counts a protocol error on a guest session, by its error code. */
  countProtocolError(code: string): void {
    this.#protocolErrors.inc({ code });
  }

  /** Renders the exposition text of one consistent snapshot. */
  async render(): Promise<string> {
    this.#update(this.#snapshot());
    return this.registry.metrics();
  }

  #update({ host, vms }: MetricsSnapshot): void {
    for (const { spec, gauge } of this.#vmGauges) {
      gauge.reset();
      for (const vm of vms) {
        const value = spec.read(vm);
        if (value !== undefined && Number.isFinite(value)) gauge.set({ vm: vm.name }, value);
      }
    }
    for (const { spec, gauge } of this.#hostGauges) gauge.set(spec.read(host));
    this.#buildInfo.reset();
    this.#buildInfo.set({ version: host.version, nodejs_version: process.version }, 1);
    this.#balloonState.reset();
    this.#shortfallReason.reset();
    for (const vm of vms) {
      const b = vm.balloon;
      if (!b) continue;
      for (const state of STATE_VALUES) this.#balloonState.set({ vm: vm.name, state }, b.state === state ? 1 : 0);
      for (const reason of REASON_VALUES) this.#shortfallReason.set({ vm: vm.name, reason }, b.state === 'short' && b.reason === reason ? 1 : 0);
    }
  }
}
