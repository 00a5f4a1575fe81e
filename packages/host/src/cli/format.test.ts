import { describe, expect, it } from 'vitest';
import type { VmView } from '../service/views.js';
import { formatVm, formatVmLine, progressBar, reasonText } from './format.js';

const vm: VmView = {
  name: 'a',
  state: 'running',
  memoryMib: 512,
  defaultBalloonMib: 64,
  pageFusion: false,
  balloonPolicy: 'manual',
  memoryMinMib: 0,
  balloonMaxMib: 0,
  memoryWeight: 100,
  memoryBufferPercent: 20,
  balloon: { targetMib: 256, actualMib: 100, lockedMib: 100, handedOffMib: 0, state: 'short', reason: 'guest_floor', lock: 'locked', generation: 3 },
  pid: 7,
  heldMib: 412,
};

describe('balloonctl output', () => {
  it('draws a progress bar from the start to the target, both ways', () => {
    expect(progressBar(0, 100, 0, 10)).toBe('[..........] 0/100 MiB');
    expect(progressBar(50, 100, 0, 10)).toBe('[#####.....] 50/100 MiB');
    expect(progressBar(100, 100, 0, 10)).toBe('[##########] 100/100 MiB');
    expect(progressBar(150, 100, 200, 10)).toBe('[#####.....] 150/100 MiB');
    expect(progressBar(5, 5, 5, 4)).toBe('[####] 5/5 MiB');
  });

  it('prints VMs in the manner of VBoxManage', () => {
    expect(formatVmLine(vm)).toBe('"a" (512 MiB, running, balloon 100/256 MiB)');
    const text = formatVm(vm);
    expect(text).toMatch(/^Name: +a$/m);
    expect(text).toMatch(/^Balloon state: +short \(inflating further would cross the guest's free-memory floor\)$/m);
    expect(text).toMatch(/^Held of pool: +412 MiB$/m);
    expect(reasonText('cancelled')).toMatch(/newer target/);
  });
});
