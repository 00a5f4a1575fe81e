// `balloonctl metrics query [NAME] [METRIC]`: the current values under
// VirtualBox's metric names, computed from a snapshot of the host. Pure: no
// sockets, no logger, no prom-client.
//
// Unit: kB (1024 bytes), as `VBoxManage metrics query` prints every RAM metric.
// The command mirrors VBoxManage, so its rows read (and compare) the same, and
// kB keeps whole numbers where a MiB figure would need decimals. The field
// says its unit in its name (`valueKib`), as every other JSON field does.
import type { HostView, VmView } from '../service/views.js';
import { HostError } from '../errors.js';

/** The snapshot of the host that metrics are computed from. */
export interface MetricsSnapshot {
  host: HostView;
  vms: VmView[];
}

/** One value of `metrics query`: an object (a VM's name or 'host'), a metric name and its value in KiB. */
export interface MetricRow {
  object: string;
  metric: string;
  /** The value in KiB (VirtualBox's "kB"). */
  valueKib: number;
}

/** How the table prints the unit of every RAM row: kB of 1024 bytes, as VirtualBox prints them. */
export const METRIC_UNIT_KB = 'kB';

/** The object name of the host's own metrics, as VBoxManage calls it. */
export const HOST_OBJECT = 'host';

/** Guest metric names, in the order VBoxManage lists them. */
export const GUEST_METRICS = [
  'Guest/RAM/Usage/Total',
  'Guest/RAM/Usage/Free',
  'Guest/RAM/Usage/Balloon',
  'Guest/RAM/Usage/Shared',
  'Guest/RAM/Usage/Cache',
] as const;

/** Host metric names, in the order VBoxManage lists them. */
export const HOST_METRICS = ['RAM/VMM/Used', 'RAM/VMM/Free', 'RAM/VMM/Ballooned', 'RAM/VMM/Shared'] as const;

/** Every metric name `metrics query` knows. */
export const METRIC_NAMES: readonly string[] = [...GUEST_METRICS, ...HOST_METRICS];

/** One line of `metrics list`. */
export interface MetricDescription {
  metric: string;
  /** What it is reported for: each running VM, or the host. */
  object: 'vm' | 'host';
  description: string;
}

/** What each metric measures, in the order `metrics list` prints them. */
export const METRIC_DESCRIPTIONS: readonly MetricDescription[] = [
  { metric: 'Guest/RAM/Usage/Total', object: 'vm', description: "the guest's memory as it measures it (else the VM's memory)" },
  { metric: 'Guest/RAM/Usage/Free', object: 'vm', description: 'free memory in the guest' },
  { metric: 'Guest/RAM/Usage/Balloon', object: 'vm', description: 'the balloon the guest holds (actual)' },
  { metric: 'Guest/RAM/Usage/Shared', object: 'vm', description: "the guest's memory merged by page fusion" },
  { metric: 'Guest/RAM/Usage/Cache', object: 'vm', description: 'disk caches in the guest' },
  { metric: 'RAM/VMM/Used', object: 'host', description: 'pool memory held by running VMs' },
  { metric: 'RAM/VMM/Free', object: 'host', description: 'pool memory no VM holds' },
  { metric: 'RAM/VMM/Ballooned', object: 'host', description: 'memory reclaimed by balloons' },
  { metric: 'RAM/VMM/Shared', object: 'host', description: 'memory merged by page fusion across guests' },
];

const KB_PER_MIB = 1024;

function kb(mib: number): number {
  return Math.round(mib * KB_PER_MIB);
}

/** The guest rows of a running VM; values the guest has not reported yet are left out, not shown as 0. */
function guestRows(vm: VmView): MetricRow[] {
  const values: Record<(typeof GUEST_METRICS)[number], number | undefined> = {
    'Guest/RAM/Usage/Total': vm.stats?.totalMib ?? vm.memoryMib,
    'Guest/RAM/Usage/Free': vm.stats?.freeMib,
    'Guest/RAM/Usage/Balloon': vm.balloon?.actualMib,
    // Page fusion as the host measured it; the guest's own KSM figure otherwise.
    'Guest/RAM/Usage/Shared': vm.sharedMib ?? vm.stats?.sharedMib,
    'Guest/RAM/Usage/Cache': vm.stats?.cacheMib,
  };
  const rows: MetricRow[] = [];
  for (const metric of GUEST_METRICS) {
    const mib = values[metric];
    if (mib !== undefined) rows.push({ object: vm.name, metric, valueKib: kb(mib) });
  }
  return rows;
}

function hostRows(host: HostView): MetricRow[] {
  const values: Record<(typeof HOST_METRICS)[number], number> = {
    'RAM/VMM/Used': host.pool.heldMib,
    'RAM/VMM/Free': host.pool.freeMib,
    'RAM/VMM/Ballooned': host.pool.reclaimedMib,
    'RAM/VMM/Shared': host.sharedMib,
  };
  return HOST_METRICS.map((metric) => ({ object: HOST_OBJECT, metric, valueKib: kb(values[metric]) }));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.+^${}()|[\]\\]/g, '\\$&');
}

/**
 * Compiles a metric filter as VBoxManage reads it: a comma-separated list of
 * patterns; a pattern with `*` (any run of characters, `/` included) or `?`
 * (one character) must match the whole name, any other pattern is a prefix
 * (`Guest/RAM` selects the five guest metrics).
 */
export function compileMetricFilter(filter: string): (metric: string) => boolean {
  const tests = filter
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0)
    .map((pattern): ((metric: string) => boolean) => {
      if (!/[*?]/.test(pattern)) return (metric) => metric.startsWith(pattern);
      const source = pattern
        .split('')
        .map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : escapeRegExp(ch)))
        .join('');
      const re = new RegExp(`^${source}$`);
      return (metric) => re.test(metric);
    });
  if (tests.length === 0) return () => true;
  return (metric) => tests.some((t) => t(metric));
}

/**
 * The rows of `metrics query [NAME] [METRIC]`. NAME is a VM's name, `host`, or
 * `*`/absent for every running VM and the host. Throws HostError (not_found, not_running, invalid_argument) for a
 * VM that is not registered or not running, and for a filter that matches no
 * known metric name.
 */
export function queryMetrics(snapshot: MetricsSnapshot, vmName?: string, metric?: string): MetricRow[] {
  const matches = compileMetricFilter(metric ?? '*');
  if (!METRIC_NAMES.some(matches)) {
    throw new HostError('invalid_argument', `no metric matches '${metric}' (known: ${METRIC_NAMES.join(', ')})`);
  }

  let rows: MetricRow[];
  if (vmName === undefined || vmName === '*') {
    rows = snapshot.vms
      .filter((vm) => vm.state === 'running')
      .sort((a, b) => a.name.localeCompare(b.name))
      .flatMap(guestRows)
      .concat(hostRows(snapshot.host));
  } else if (vmName === HOST_OBJECT) {
    rows = hostRows(snapshot.host);
  } else {
    const vm = snapshot.vms.find((v) => v.name === vmName);
    if (!vm) throw new HostError('not_found', `no VM named '${vmName}' is registered`);
    if (vm.state !== 'running') {
      throw new HostError('not_running', `VM '${vmName}' is not running: its guest reports no metrics`);
    }
    rows = guestRows(vm);
  }
  return rows.filter((row) => matches(row.metric));
}
