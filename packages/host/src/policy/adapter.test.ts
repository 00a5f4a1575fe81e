import { describe, expect, it } from 'vitest';
import type { VmView } from '../api/views.js';
import { policyVmInputFromView } from './adapter.js';

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
});
