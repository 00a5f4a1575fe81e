import { describe, expect, it } from 'vitest';
import { formatMetricsTable } from './format.js';
import { HostError } from '../errors.js';
import { compileMetricFilter, queryMetrics } from './query.js';
import { demoSnapshot } from './test-fixtures.js';

function errorOf(fn: () => unknown): HostError {
  try {
    fn();
  } catch (err) {
    if (err instanceof HostError) return err;
    throw err;
  }
  throw new Error('expected a HostError');
}

describe('queryMetrics', () => {
  const snap = demoSnapshot();

  it('lists every running VM and the host under VirtualBox names, in kB', () => {
    const rows = queryMetrics(snap);
    expect(rows.map((r) => r.object)).not.toContain('vm-off');
    expect(new Set(rows.map((r) => r.object))).toEqual(new Set(['vm-large', 'vm-medium', 'vm-small', 'host']));
    expect(rows.every((r) => Object.keys(r).join() === 'object,metric,valueKib')).toBe(true);
    const value = (object: string, metric: string) => rows.find((r) => r.object === object && r.metric === metric)?.valueKib;
    expect(value('vm-large', 'Guest/RAM/Usage/Total')).toBe(1024 * 1024);
    expect(value('vm-large', 'Guest/RAM/Usage/Free')).toBe(256 * 1024);
    expect(value('vm-large', 'Guest/RAM/Usage/Balloon')).toBe(590 * 1024);
    expect(value('vm-large', 'Guest/RAM/Usage/Shared')).toBe(5 * 1024);
    expect(value('vm-large', 'Guest/RAM/Usage/Cache')).toBe(64 * 1024);
    expect(value('host', 'RAM/VMM/Used')).toBe(snap.host.pool.heldMib * 1024);
    expect(value('host', 'RAM/VMM/Free')).toBe(snap.host.pool.freeMib * 1024);
    expect(value('host', 'RAM/VMM/Ballooned')).toBe(snap.host.pool.reclaimedMib * 1024);
    expect(value('host', 'RAM/VMM/Shared')).toBe(10 * 1024);
  });

  it('selects one VM, or the host, by name', () => {
    expect(queryMetrics(snap, 'vm-medium').map((r) => r.metric)).toEqual([
      'Guest/RAM/Usage/Total',
      'Guest/RAM/Usage/Free',
      'Guest/RAM/Usage/Balloon',
      'Guest/RAM/Usage/Shared',
      'Guest/RAM/Usage/Cache',
    ]);
    expect(queryMetrics(snap, 'host').map((r) => r.metric)).toEqual(['RAM/VMM/Used', 'RAM/VMM/Free', 'RAM/VMM/Ballooned', 'RAM/VMM/Shared']);
    expect(queryMetrics(snap, '*').length).toBe(queryMetrics(snap).length);
  });

  it('filters by prefix, by * and ? patterns, and by comma lists', () => {
    expect(queryMetrics(snap, 'vm-small', 'Guest/RAM/Usage/Balloon')).toEqual([{ object: 'vm-small', metric: 'Guest/RAM/Usage/Balloon', valueKib: 0 }]);
    expect(queryMetrics(snap, 'host', 'RAM/VMM').length).toBe(4);
    expect(queryMetrics(snap, undefined, '*/Free').map((r) => `${r.object} ${r.metric}`)).toEqual([
      'vm-large Guest/RAM/Usage/Free',
      'vm-medium Guest/RAM/Usage/Free',
      'vm-small Guest/RAM/Usage/Free',
      'host RAM/VMM/Free',
    ]);
    expect(queryMetrics(snap, 'vm-small', 'Guest/RAM/Usage/?ree,Guest/RAM/Usage/Cache').map((r) => r.metric)).toEqual([
      'Guest/RAM/Usage/Free',
      'Guest/RAM/Usage/Cache',
    ]);
    // A regular-expression character in a pattern is literal.
    expect(compileMetricFilter('Guest.RAM*')('Guest/RAM/Usage/Total')).toBe(false);
  });

  it('leaves out guest values the guest has not reported yet', () => {
    const fresh = demoSnapshot();
    delete fresh.vms[0]!.stats;
    const metrics = queryMetrics(fresh, 'vm-small').map((r) => r.metric);
    expect(metrics).toEqual(['Guest/RAM/Usage/Total', 'Guest/RAM/Usage/Balloon', 'Guest/RAM/Usage/Shared']);
  });

  it('refuses an unknown VM, a powered-off VM and an unknown metric with a code', () => {
    expect(errorOf(() => queryMetrics(snap, 'nope')).code).toBe('not_found');
    expect(errorOf(() => queryMetrics(snap, 'vm-off')).code).toBe('not_running');
    const unknown = errorOf(() => queryMetrics(snap, undefined, 'CPU/Load/User'));
    expect(unknown.code).toBe('invalid_argument');
    expect(unknown.message).toContain('CPU/Load/User');
  });
});

describe('formatMetricsTable', () => {
  it('lays rows out as VBoxManage does', () => {
    const text = formatMetricsTable(queryMetrics(demoSnapshot(), 'host', 'RAM/VMM/Used,RAM/VMM/Free'));
    expect(text).toBe(
      ['Object Metric       Values', '------ ------------ ----------', 'host   RAM/VMM/Used 1492992 kB', 'host   RAM/VMM/Free 79872 kB', ''].join('\n'),
    );
  });

  it('says so when nothing matches', () => {
    expect(formatMetricsTable([])).toBe('No metrics match.\n');
  });
});
