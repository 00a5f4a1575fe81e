// Metrics of the host: Prometheus exposition (`/metrics`) and VirtualBox-named
// queries (`balloonctl metrics query`). See README.md next to this file.
export { HostMetrics } from './prometheus.js';
export {
  queryMetrics,
  compileMetricFilter,
  METRIC_NAMES,
  METRIC_DESCRIPTIONS,
  GUEST_METRICS,
  HOST_METRICS,
  HOST_OBJECT,
  METRIC_UNIT_KB,
  type MetricRow,
  type MetricDescription,
  type MetricsSnapshot,
} from './query.js';
export { formatMetricList, formatMetricsTable } from './format.js';
