import { describe, expect, it } from 'vitest';
import { testInput, testSettings, testStats, testVm } from '../testkit.js';
import { MOM_BALLOON_DEFAULTS, momDefaultPolicy } from './momDefault.js';
import { VBOX_BALLOONCTRL_DEFAULTS, vboxBalloonCtrlPolicy, vboxBalloonDeltaMib } from './vboxBalloonCtrl.js';

const c = VBOX_BALLOONCTRL_DEFAULTS;

describe('VBoxBalloonCtrl rule (balloonGetDelta)', () => {
  it('has the published defaults', () => {
    expect(c).toMatchObject({ balloonIncrementMib: 256, balloonDecrementMib: 128, balloonLowerLimitMib: 128, balloonSafetyMarginMib: 1024 });
  });

  it('deflates by the decrement when free memory is below the lower limit', () => {
    expect(vboxBalloonDeltaMib(c, 100, 1000, 2000, 0, 4096)).toBe(-128);
    // ... but not below zero,
    expect(vboxBalloonDeltaMib(c, 100, 100, 2000, 0, 4096)).toBe(0);
    // ... and only out of host memory above the safety margin.
    expect(vboxBalloonDeltaMib(c, 100, 1000, 2000, 0, 1024 + 50)).toBe(-50);
    expect(vboxBalloonDeltaMib(c, 100, 1000, 2000, 0, 1000)).toBe(0);
  });

  it('inflates by the increment, halved until free memory stays above the lower limit', () => {
    expect(vboxBalloonDeltaMib(c, 2000, 0, 3000, 0, 0)).toBe(256);
    expect(vboxBalloonDeltaMib(c, 300, 0, 3000, 0, 0)).toBe(128);
    expect(vboxBalloonDeltaMib(c, 400, 0, 3000, 0, 0)).toBe(256);
    // uint32 wrap-around of the original: less free than the increment inflates by all of it.
    expect(vboxBalloonDeltaMib(c, 150, 0, 3000, 0, 0)).toBe(256);
    // Never past the requested size.
    expect(vboxBalloonDeltaMib(c, 2000, 2900, 3000, 0, 0)).toBe(100);
  });

  it('steps each VM from its current balloon', () => {
    const policy = vboxBalloonCtrlPolicy();
    const input = testInput([testVm('low', 1000, testStats(150, { freeMib: 50 })), testVm('rich', 0, testStats(3000, { freeMib: 2900 }))], 16384);
    const { decision } = policy.step(policy.initialState(), input);
    expect(decision.changes.map((x) => [x.name, x.targetMib])).toEqual([
      ['low', 872],
      ['rich', 256],
    ]);
  });
});

describe('MOM default balloon policy', () => {
  it('has the published constants', () => {
    expect(MOM_BALLOON_DEFAULTS).toMatchObject({
      pressureThresholdFraction: 0.2,
      pressureCriticalFraction: 0.05,
      minGuestFreeFraction: 0.2,
      maxBalloonChangeFraction: 0.05,
      minBalloonChangeFraction: 0.0025,
    });
  });

  it('shrinks every guest by 5 % of its memory under host pressure', () => {
    const policy = momDefaultPolicy();
    // Pool free 0 %: pressure. Guest memory 4096 - 1000 = 3096 -> 2941.2.
    const vm = testVm('a', 1000, testStats(2000, { freeMib: 1500 }), { settings: testSettings({ memoryMinMib: 0 }) });
    const input = { nowMs: 0, poolSizeMib: 3096, poolFreeMib: 0, vms: [vm] };
    const { decision } = policy.step(policy.initialState(), input);
    expect(decision.changes[0]?.targetMib).toBe(Math.round(4096 - 3096 * 0.95));
  });

  it('grows every guest by 5 % when the host is not under pressure', () => {
    const policy = momDefaultPolicy();
    const vm = testVm('a', 1000, testStats(2000));
    const { decision } = policy.step(policy.initialState(), { nowMs: 0, poolSizeMib: 8192, poolFreeMib: 4096, vms: [vm] });
    expect(decision.changes[0]?.targetMib).toBe(Math.round(4096 - 3096 * 1.05));
  });

  it('skips changes under 0.25 % of the guest memory', () => {
    const policy = momDefaultPolicy();
    // Only 5 MiB left to grow to full memory: below 0.25 % of 4091.
    const vm = testVm('a', 5, testStats(2000));
    const { decision } = policy.step(policy.initialState(), { nowMs: 0, poolSizeMib: 8192, poolFreeMib: 4096, vms: [vm] });
    expect(decision.changes).toEqual([]);
  });
});
