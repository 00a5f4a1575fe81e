import { describe, expect, it } from 'vitest';
import { poweredOffVm, runningVm } from '../metrics/test-fixtures.js';
import { VmHistory } from './history.js';

const vm = (targetMib: number, actualMib: number, startedAtMs = 1) => runningVm('a', 1024, { targetMib, actualMib }, { startedAtMs });

describe('VmHistory', () => {
  it('records a point only when a figure changed, and serves them as columns', () => {
    const h = new VmHistory();
    h.record([vm(0, 0)], 1000);
    h.record([vm(0, 0)], 2000);
    h.record([vm(100, 50)], 3000);
    h.record([vm(100, 100)], 4000);
    expect(h.event(5000)).toEqual({
      windowMs: 15 * 60_000,
      vms: { a: { atMs: [1000, 3000, 4000], targetMib: [0, 100, 100], actualMib: [0, 50, 100], availableMib: [512, 512, 512] } },
    });
  });

  it('grows its ring as points come, then keeps the newest 900 in order', () => {
    const h = new VmHistory();
    for (let i = 0; i < 2000; i++) h.record([vm(i, i)], i);
    expect(h.sizeOf('a')).toBe(900);
    const series = h.event(2000).vms.a!;
    expect(series.actualMib[0]).toBe(1100);
    expect(series.actualMib.at(-1)).toBe(1999);
    expect(series.atMs.every((t, i) => i === 0 || t === series.atMs[i - 1]! + 1)).toBe(true);
  });

  it('keeps at most its capacity per VM (the newest), and serves only the window', () => {
    const h = new VmHistory({ capacity: 5, windowMs: 10_000 });
    for (let i = 0; i < 12; i++) h.record([vm(i, i)], i * 1000);
    expect(h.sizeOf('a')).toBe(5);
    expect(h.event(11_000).vms.a!.actualMib).toEqual([7, 8, 9, 10, 11]);
    expect(h.event(18_500).vms.a!.atMs).toEqual([9000, 10_000, 11_000]);
  });

  it('forgets a VM that stops, and starts afresh for a new session', () => {
    const h = new VmHistory();
    h.record([vm(10, 10, 1)], 1000);
    h.record([vm(20, 20, 1)], 2000);
    h.record([vm(20, 20, 2)], 3000);
    expect(h.event(4000).vms.a!.atMs).toEqual([3000]);
    h.record([poweredOffVm('a', 1024)], 5000);
    expect(h.event(6000).vms).toEqual({});
  });

  it('says null where the guest has not reported its statistics', () => {
    const h = new VmHistory();
    h.record([runningVm('b', 256, { targetMib: 0, actualMib: 0 }, { stats: undefined })], 1);
    expect(h.event(2).vms.b!.availableMib).toEqual([null]);
  });

  it('refuses a capacity that is not a positive whole number', () => {
    expect(() => new VmHistory({ capacity: 0 })).toThrow(/capacity/);
  });

  it('records the same points from a source of figures as from VmViews (what the host samples each second)', () => {
    const fromViews = new VmHistory({ capacity: 8 });
    const fromSource = new VmHistory({ capacity: 8 });
    const rounds = [
      [vm(0, 0)],
      [vm(0, 0)],
      [vm(100, 50), runningVm('b', 512, { targetMib: 5, actualMib: 5 }, { startedAtMs: 7 })],
      [vm(100, 100, 2)], // a new session of a, b stopped
      [poweredOffVm('a', 1024)],
      [vm(3, 3, 3)],
    ];
    rounds.forEach((vms, i) => {
      fromViews.record(vms, i * 1000);
      fromSource.sample((visit) => {
        for (const v of vms)
          if (v.state === 'running' && v.balloon) visit(v.name, v.startedAtMs, v.balloon.targetMib, v.balloon.actualMib, v.stats?.availableMib);
      }, i * 1000);
      expect(fromSource.event(i * 1000 + 1)).toEqual(fromViews.event(i * 1000 + 1));
    });
    expect(fromSource.sizeOf('a')).toBe(1);
    expect(fromSource.sizeOf('b')).toBe(0);
  });
});
