// The human output of `balloonctl metrics query`, laid out as VBoxManage lays
// out its own: Object, Metric, Values, a dashed rule, one row per value.
import { METRIC_UNIT_KB, type MetricDescription, type MetricRow } from './query.js';

/** Formats rows as VBoxManage's table (columns as wide as their content); a line saying so when there are none. */
export function formatMetricsTable(rows: readonly MetricRow[]): string {
  if (rows.length === 0) return 'No metrics match.\n';
  const cells = rows.map((r) => [r.object, r.metric, `${r.valueKib} ${METRIC_UNIT_KB}`] as const);
  const head = ['Object', 'Metric', 'Values'] as const;
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]): string => c.map((cell, i) => (i < c.length - 1 ? cell.padEnd(width[i]!) : cell)).join(' ');
  const rule = width.map((w) => '-'.repeat(w)).join(' ');
  return [line(head), rule, ...cells.map(line)].join('\n') + '\n';
}

/** Formats `metrics list`: each name, what it is reported for, and what it measures. */
export function formatMetricList(metrics: readonly MetricDescription[]): string {
  const width = Math.max(...metrics.map((m) => m.metric.length));
  return metrics.map((m) => `${m.metric.padEnd(width)}  ${m.object === 'host' ? 'host' : 'VM  '}  ${m.description}`).join('\n');
}
