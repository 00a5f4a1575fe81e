import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HostMetrics } from './prometheus.js';
import { demoSnapshot, runningVm, snapshotOf } from './test-fixtures.js';

const MIB = 1024 * 1024;
const PROMTOOL = '/usr/bin/promtool';

/** Parses the text exposition into `name{labels}` → value, checking every line has a known shape. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${JSON.stringify(line)}`);
    // prom-client prints NaN as `Nan`; Prometheus reads it case-insensitively.
    const value = /^nan$/i.test(m[3]!) ? Number.NaN : Number(m[3]);
    if (Number.isNaN(value) && !/^nan$/i.test(m[3]!)) throw new Error(`bad value in ${JSON.stringify(line)}`);
    samples.set(`${m[1]}${m[2] ?? ''}`, value);
  }
  return samples;
}

describe('HostMetrics', () => {
  it('exports the pool and every running VM from the snapshot, in bytes', async () => {
    const snap = demoSnapshot();
    const metrics = new HostMetrics(() => snap);
    const samples = parseExposition(await metrics.render());

    expect(samples.get('memballoon_pool_size_bytes')).toBe(1536 * MIB);
    expect(samples.get('memballoon_pool_held_bytes')).toBe(snap.host.pool.heldMib * MIB);
    expect(samples.get('memballoon_pool_reclaimed_bytes')).toBe(snap.host.pool.reclaimedMib * MIB);
    expect(samples.get('memballoon_pool_free_bytes')).toBe(snap.host.pool.freeMib * MIB);
    expect(samples.get('memballoon_host_shared_bytes')).toBe(10 * MIB);
    expect(samples.get('memballoon_vms_running')).toBe(3);

    expect(samples.get('memballoon_vm_memory_bytes{vm="vm-large"}')).toBe(1024 * MIB);
    expect(samples.get('memballoon_vm_balloon_target_bytes{vm="vm-large"}')).toBe(600 * MIB);
    expect(samples.get('memballoon_vm_balloon_actual_bytes{vm="vm-large"}')).toBe(590 * MIB);
    expect(samples.get('memballoon_vm_balloon_locked_bytes{vm="vm-large"}')).toBe(590 * MIB);
    expect(samples.get('memballoon_vm_held_bytes{vm="vm-large"}')).toBe(434 * MIB);
    expect(samples.get('memballoon_vm_guest_available_bytes{vm="vm-large"}')).toBe(512 * MIB);
    expect(samples.get('memballoon_vm_guest_free_bytes{vm="vm-large"}')).toBe(256 * MIB);
    expect(samples.get('memballoon_vm_guest_cache_bytes{vm="vm-large"}')).toBe(64 * MIB);
    expect(samples.get('memballoon_vm_shared_bytes{vm="vm-large"}')).toBe(5 * MIB);
    expect(samples.get('memballoon_vm_pressure_some_ratio{vm="vm-large"}')).toBe(0.125);
    expect(samples.get('memballoon_vm_pressure_full_ratio{vm="vm-large"}')).toBe(0.025);
    expect(samples.get('memballoon_vm_running{vm="vm-large"}')).toBe(1);

    // A powered-off VM has its configuration, but no balloon and no guest figures.
    expect(samples.get('memballoon_vm_running{vm="vm-off"}')).toBe(0);
    expect(samples.get('memballoon_vm_memory_bytes{vm="vm-off"}')).toBe(2048 * MIB);
    expect(samples.has('memballoon_vm_balloon_actual_bytes{vm="vm-off"}')).toBe(false);

    // Default process metrics are there too.
    expect(samples.has('process_cpu_seconds_total')).toBe(true);
  });

  it('reads a fresh snapshot at every scrape, and drops VMs that went away', async () => {
    let snap = demoSnapshot();
    const metrics = new HostMetrics(() => snap);
    await metrics.render();
    snap = snapshotOf([runningVm('vm-small', 512, { targetMib: 128, actualMib: 64 })]);
    const samples = parseExposition(await metrics.render());
    expect(samples.get('memballoon_vm_balloon_actual_bytes{vm="vm-small"}')).toBe(64 * MIB);
    expect(samples.has('memballoon_vm_memory_bytes{vm="vm-large"}')).toBe(false);
    expect(samples.get('memballoon_vms_running')).toBe(1);
  });

  it('counts sessions, refusals and protocol errors with their labels', async () => {
    const metrics = new HostMetrics(demoSnapshot);
    metrics.countSession('vm-small');
    metrics.countSession('vm-small');
    metrics.countRefusal('balloon_too_large');
    metrics.countProtocolError('malformed_frame');
    const samples = parseExposition(await metrics.render());
    expect(samples.get('memballoon_sessions_total{vm="vm-small"}')).toBe(2);
    expect(samples.get('memballoon_refusals_total{reason="balloon_too_large"}')).toBe(1);
    expect(samples.get('memballoon_protocol_errors_total{code="malformed_frame"}')).toBe(1);
  });

  it('says what operators alert on: build info, balloon state and shortfall reason, last stats time, target changes', async () => {
    const snap = snapshotOf([
      runningVm('stuck', 512, { targetMib: 300, actualMib: 200, state: 'short', reason: 'guest_floor' }),
      runningVm('fine', 512, { targetMib: 100, actualMib: 100 }),
    ]);
    snap.vms[0]!.stats = { ...snap.vms[1]!.stats!, receivedAtMs: 1_700_000_000_500 };
    const metrics = new HostMetrics(() => snap);
    metrics.countTargetChange('stuck', 'controlvm');
    metrics.countTargetChange('stuck', 'controlvm');
    metrics.countTargetChange('fine', 'policy');
    metrics.countRefusal('forbidden');
    const samples = parseExposition(await metrics.render());
    expect(samples.get(`memballoon_build_info{version="${snap.host.version}",nodejs_version="${process.version}"}`)).toBe(1);
    expect(samples.get('memballoon_vm_balloon_state{vm="stuck",state="short"}')).toBe(1);
    expect(samples.get('memballoon_vm_balloon_state{vm="stuck",state="steady"}')).toBe(0);
    expect(samples.get('memballoon_vm_balloon_shortfall_reason{vm="stuck",reason="guest_floor"}')).toBe(1);
    expect(samples.get('memballoon_vm_balloon_shortfall_reason{vm="stuck",reason="out_of_memory"}')).toBe(0);
    expect(samples.get('memballoon_vm_balloon_shortfall_reason{vm="fine",reason="guest_floor"}')).toBe(0);
    expect(samples.get('memballoon_vm_balloon_shortfall_bytes{vm="stuck"}')).toBe(100 * MIB);
    expect(samples.get('memballoon_vm_balloon_shortfall_bytes{vm="fine"}')).toBe(0);
    expect(samples.get('memballoon_vm_last_stats_timestamp_seconds{vm="stuck"}')).toBe(1_700_000_000.5);
    expect(samples.get('memballoon_balloon_target_changes_total{vm="stuck",source="controlvm"}')).toBe(2);
    expect(samples.get('memballoon_balloon_target_changes_total{vm="fine",source="policy"}')).toBe(1);
    expect(samples.get('memballoon_refusals_total{reason="forbidden"}')).toBe(1);
    // Targets sent between scrapes add to what the last scrape showed (they are handed over at each scrape).
    metrics.countTargetChange('stuck', 'controlvm');
    metrics.countTargetChange('fine', 'reclaim');
    const later = parseExposition(await metrics.render());
    expect(later.get('memballoon_balloon_target_changes_total{vm="stuck",source="controlvm"}')).toBe(3);
    expect(later.get('memballoon_balloon_target_changes_total{vm="fine",source="policy"}')).toBe(1);
    expect(later.get('memballoon_balloon_target_changes_total{vm="fine",source="reclaim"}')).toBe(1);
    expect(parseExposition(await metrics.render()).get('memballoon_balloon_target_changes_total{vm="stuck",source="controlvm"}')).toBe(3);
    // Help texts name the labels their series carry.
    const text = await metrics.render();
    for (const [name, labels] of [
      ['memballoon_build_info', ['version', 'nodejs_version']],
      ['memballoon_vm_balloon_state', ['state']],
      ['memballoon_vm_balloon_shortfall_reason', ['reason']],
      ['memballoon_balloon_target_changes_total', ['source']],
      ['memballoon_refusals_total', ['unauthorized', 'forbidden', 'pool_exhausted']],
    ] as const) {
      const help = new RegExp(`^# HELP ${name} (.*)$`, 'm').exec(text)?.[1] ?? '';
      for (const label of labels) expect(help, name).toContain(label);
    }
  });

  it('escapes label values and answers with the Prometheus text content type', async () => {
    const metrics = new HostMetrics(() => snapshotOf([runningVm('we"ird\\vm', 256, { targetMib: 0, actualMib: 0 })]));
    const text = await metrics.render();
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(text).toContain('memballoon_vm_memory_bytes{vm="we\\"ird\\\\vm"} 268435456');
  });

  it('passes promtool check metrics', async (ctx) => {
    if (!existsSync(PROMTOOL)) {
      console.log(`skipped: ${PROMTOOL} not found (Debian's prometheus package provides it)`);
      ctx.skip();
    }
    const metrics = new HostMetrics(demoSnapshot);
    metrics.countSession('vm-small');
    metrics.countRefusal('pool_exhausted');
    metrics.countProtocolError('malformed_frame');
    metrics.countTargetChange('vm-small', 'controlvm');
    metrics.countRefusal('forbidden');
    const check = spawnSync(PROMTOOL, ['check', 'metrics'], { input: await metrics.render(), encoding: 'utf8' });
    expect(check.error).toBeUndefined();
    expect(`${check.stdout}${check.stderr}`.trim()).toBe('');
    expect(check.status).toBe(0);
  });
});
