// modifyvm's automatic-policy settings (issue 7): allowed while the VM runs,
// because they steer rather than resize, and validated with clear errors.
import { describe, expect, it } from 'vitest';
import type { HostError } from '../errors.js';
import { testHello, testLogger, testService } from './test-fixtures.js';

const logger = testLogger;

function service() {
  return testService({ poolSizeMib: 4096 });
}

const hello = testHello;

const refusal = (fn: () => unknown): { code: string; message: string } | undefined => {
  try {
    fn();
  } catch (e) {
    return { code: (e as HostError).code, message: (e as HostError).message };
  }
  return undefined;
};

describe('modifyvm policy settings', () => {
  it('are accepted while the VM runs and reach the pool, resize settings are not', async () => {
    const s = service();
    const { token } = s.createVm({ name: 'a', memoryMib: 512 });
    const r = await s.openSession(hello('a', 512, token), { open: true, sendTarget: () => {}, end: () => {} }, logger);
    expect(r.ok).toBe(true);
    const v = s.modifyVm('a', { balloonPolicy: 'auto', memoryMinMib: 128, balloonMaxMib: 300, memoryWeight: 250, memoryBufferPercent: 15 });
    expect(v).toMatchObject({ state: 'running', balloonPolicy: 'auto', memoryMinMib: 128, balloonMaxMib: 300, memoryWeight: 250, memoryBufferPercent: 15 });
    expect(s.pool.get('a')).toMatchObject({ memoryMinMib: 128, balloonMaxMib: 300 });
    expect(refusal(() => s.modifyVm('a', { memoryMib: 1024, memoryWeight: 1 }))?.code).toBe('vm_running');
    expect(s.vmView('a').memoryWeight).toBe(250);
  });

  it('checks weight, buffer, minimum and maximum with errors that name the limit', () => {
    const s = service();
    s.createVm({ name: 'v', memoryMib: 512 });
    expect(refusal(() => s.modifyVm('v', { memoryWeight: 0 }))).toEqual({ code: 'out_of_range', message: 'memoryWeight 0 is out of range (1 to 10000)' });
    expect(refusal(() => s.modifyVm('v', { memoryWeight: 10_001 }))?.code).toBe('out_of_range');
    expect(refusal(() => s.modifyVm('v', { memoryWeight: 1.5 }))?.code).toBe('invalid_argument');
    expect(refusal(() => s.modifyVm('v', { memoryBufferPercent: 101 }))).toEqual({
      code: 'out_of_range',
      message: 'memoryBufferPercent 101 % is out of range (0 to 100 %)',
    });
    expect(refusal(() => s.modifyVm('v', { memoryMinMib: 513 }))).toEqual({
      code: 'out_of_range',
      message: 'memoryMinMib 513 MiB is out of range (0 to 512 MiB)',
    });
    expect(refusal(() => s.modifyVm('v', { balloonMaxMib: 461 }))).toEqual({
      code: 'out_of_range',
      message: 'balloonMaxMib 461 MiB is out of range (0 to 460 MiB, below 90 % of the VM memory; 0 or null: the 90 % rule alone)',
    });
    expect(refusal(() => s.modifyVm('v', { balloonPolicy: 'on' as never }))?.code).toBe('invalid_argument');
    expect(s.modifyVm('v', { memoryWeight: 1, memoryBufferPercent: 0, memoryMinMib: 512, balloonMaxMib: 460 })).toMatchObject({
      memoryWeight: 1,
      memoryMinMib: 512,
      balloonMaxMib: 460,
    });
    expect(s.modifyVm('v', { memoryWeight: 10_000, memoryBufferPercent: 100, balloonMaxMib: 0 })).toMatchObject({ memoryWeight: 10_000, balloonMaxMib: null });
    // Nothing was half-applied by the refusals.
    expect(s.vmView('v')).toMatchObject({ memoryMinMib: 512, memoryBufferPercent: 100 });
  });

  it('a smaller memory may not leave the stored minimum or maximum behind it', () => {
    const s = service();
    s.createVm({ name: 'v', memoryMib: 1024 });
    s.modifyVm('v', { memoryMinMib: 600, balloonMaxMib: 800 });
    expect(refusal(() => s.modifyVm('v', { memoryMib: 512 }))).toEqual({
      code: 'out_of_range',
      message: "memoryMinMib 600 MiB of VM 'v' is above its memory of 512 MiB: lower it too (--memory-min)",
    });
    expect(refusal(() => s.modifyVm('v', { memoryMib: 800, memoryMinMib: 100 }))).toEqual({
      code: 'out_of_range',
      message:
        "balloonMaxMib 800 MiB of VM 'v' is 90 % or more of its memory of 800 MiB (the largest allowed is 719 MiB): lower it too (--balloon-max, 0 for the 90 % rule alone)",
    });
    expect(s.vmView('v')).toMatchObject({ memoryMib: 1024, memoryMinMib: 600, balloonMaxMib: 800 });
    expect(s.modifyVm('v', { memoryMib: 512, memoryMinMib: 100, balloonMaxMib: 0 })).toMatchObject({ memoryMib: 512, memoryMinMib: 100, balloonMaxMib: null });
  });
});
