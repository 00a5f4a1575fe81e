import { describe, expect, it } from 'vitest';
import type { VmView } from '../service/views.js';
import { formatVm, formatVmLine, formatVmMachineReadable, pinnedText, progressBar, reasonText } from './format.js';

const vm: VmView = {
  name: 'a',
  state: 'running',
  memoryMib: 512,
  defaultBalloonMib: 64,
  pageFusion: false,
  balloonPolicy: 'manual',
  memoryMinMib: 0,
  balloonMaxMib: null,
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
    expect(text).toMatch(/^Balloon max: +not set \(the 90 % rule alone\)$/m);
  });

  it('says how much of the balloon is pinned once, and only when not all of it is', () => {
    expect(formatVm(vm)).toMatch(/^Balloon actual: +100 MiB$/m);
    expect(pinnedText(307, 307, 'locked')).toBe('');
    expect(pinnedText(0, 0, 'not_permitted')).toBe('');
    expect(pinnedText(307, 0, 'not_permitted')).toBe(' (none pinned: the guest may not pin memory (needs root or CAP_IPC_LOCK))');
    expect(pinnedText(307, 200, 'locked')).toBe(' (200 MiB pinned: the rest is being pinned)');
    expect(pinnedText(64, 0, 'disabled')).toMatch(/--no-lock/);
  });

  it("prints VBoxManage's machine-readable form: numbers bare, strings quoted and escaped, unset left out", () => {
    const text = formatVmMachineReadable({ ...vm, name: 'a "b"\\c', balloonMaxMib: null });
    const lines = text.split('\n');
    expect(lines.slice(0, 5)).toEqual(['name="a \\"b\\"\\\\c"', 'VMState="running"', 'memory=512', 'GuestMemoryBalloon=64', 'pagefusion="off"']);
    for (const line of lines) expect(line).toMatch(/^[A-Za-z][A-Za-z0-9]*=("([^"\\]|\\.)*"|-?\d+(\.\d+)?)$/);
    expect(lines).toContain('balloonTargetMib=256');
    expect(lines).toContain('balloonReason="guest_floor"');
    expect(lines).toContain('pid=7');
    expect(text).not.toMatch(/balloonMaxMib/);
    expect(formatVmMachineReadable({ ...vm, balloonMaxMib: 300 })).toMatch(/^balloonMaxMib=300$/m);
    expect(formatVmMachineReadable({ ...vm, state: 'poweroff', balloon: undefined })).not.toMatch(/balloon(Target|Actual)/);
  });
});
