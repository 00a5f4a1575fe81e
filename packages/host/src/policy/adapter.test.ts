import { describe, expect, it } from 'vitest';
import type { VmView } from '../service/views.js';
import { engineBalloonMaxMib, policyVmInputFromView } from './adapter.js';

const view = (over: Partial<VmView>): VmView =>
  ({
    name: 'a',
    state: 'running',
    memoryMib: 4096,
    defaultBalloonMib: 0,
    pageFusion: false,
    balloonPolicy: 'auto',
    memoryMinMib: 256,
    balloonMaxMib: 3000,
    memoryWeight: 100,
    memoryBufferPercent: 20,
    balloon: { targetMib: 100, actualMib: 90, lockedMib: 90 },
    ...over,
  }) as VmView;

describe('policyVmInputFromView', () => {
  it('maps a running auto VM', () => {
    expect(policyVmInputFromView(view({}))).toMatchObject({ name: 'a', targetMib: 100, actualMib: 90, stats: undefined, settings: { balloonMaxMib: 3000 } });
  });

  it('skips manual and stopped VMs', () => {
    expect(policyVmInputFromView(view({ balloonPolicy: 'manual' }))).toBeUndefined();
    expect(policyVmInputFromView(view({ state: 'poweroff', balloon: undefined }))).toBeUndefined();
  });

  it("translates the registry's balloon max 0 ('not set') to the 90 % rule, and keeps a set one literally", () => {
    expect(policyVmInputFromView(view({ balloonMaxMib: 0 }))?.settings.balloonMaxMib).toBe(3686);
    expect(policyVmInputFromView(view({ memoryMib: 512, balloonMaxMib: 0 }))?.settings.balloonMaxMib).toBe(460);
    expect(policyVmInputFromView(view({ memoryMib: 512, balloonMaxMib: null }))?.settings.balloonMaxMib).toBe(460);
    expect(policyVmInputFromView(view({ balloonMaxMib: 1 }))?.settings.balloonMaxMib).toBe(1);
    expect(engineBalloonMaxMib(0, 1000)).toBe(899);
    expect(engineBalloonMaxMib(300, 1000)).toBe(300);
  });

  it('a balloon stopped short is not memory on its way: its target counts as its actual', () => {
    const short = view({
      balloon: { targetMib: 300, actualMib: 120, lockedMib: 120, handedOffMib: 0, state: 'short', reason: 'guest_pressure', lock: 'locked', generation: 4 },
    });
    expect(policyVmInputFromView(short)).toMatchObject({ targetMib: 120, actualMib: 120 });
    const moving = view({
      balloon: { targetMib: 300, actualMib: 120, lockedMib: 120, handedOffMib: 0, state: 'inflating', reason: 'none', lock: 'locked', generation: 4 },
    });
    expect(policyVmInputFromView(moving)).toMatchObject({ targetMib: 300, actualMib: 120 });
  });
});
