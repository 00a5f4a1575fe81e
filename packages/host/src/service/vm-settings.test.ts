// The pure parser of createvm and modifyvm: every refusal is a HostError
// with a closed code and a message that names the limit.
import { describe, expect, it } from 'vitest';
import { HostError } from '../errors.js';
import type { VmRecord } from '../registry/registry.js';
import { parseCreateVm, parseVmPatch, parseVmPatchInput, parseWhole } from './vm-settings.js';

const record = (overrides: Partial<VmRecord> = {}): VmRecord => ({
  name: 'a',
  memoryMib: 512,
  defaultBalloonMib: 0,
  pageFusion: false,
  balloonPolicy: 'manual',
  memoryMinMib: 0,
  balloonMaxMib: 0,
  memoryWeight: 100,
  memoryBufferPercent: 20,
  tokenHash: null,
  createdAtMs: 0,
  ...overrides,
});

function refusal(fn: () => unknown): { code: string; message: string } | undefined {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof HostError)) throw err;
    return { code: err.code, message: err.message };
  }
  return undefined;
}

describe('parseCreateVm', () => {
  it('takes a valid name and memory', () => {
    expect(parseCreateVm({ name: 'vm-1', memoryMib: 512 })).toEqual({ name: 'vm-1', memoryMib: 512 });
  });

  it('refuses a missing or bad name, and a memory that is not a whole number in range', () => {
    expect(refusal(() => parseCreateVm({ name: undefined, memoryMib: 512 }))).toEqual({ code: 'invalid_argument', message: 'the VM name is missing' });
    expect(refusal(() => parseCreateVm({ name: 'a/b', memoryMib: 512 }))?.code).toBe('invalid_argument');
    expect(refusal(() => parseCreateVm({ name: 'a', memoryMib: '512' }))).toEqual({
      code: 'invalid_argument',
      message: 'memoryMib must be a whole number (got "512")',
    });
    expect(refusal(() => parseCreateVm({ name: 'a', memoryMib: 1.5 }))?.code).toBe('invalid_argument');
    expect(refusal(() => parseCreateVm({ name: 'a', memoryMib: 0 }))).toEqual({
      code: 'out_of_range',
      message: 'memoryMib 0 MiB is out of range (1 to 16777216 MiB)',
    });
  });
});

describe('parseVmPatch', () => {
  it('returns only what the patch changes', () => {
    expect(parseVmPatch(record(), { memoryWeight: 300, balloonPolicy: 'auto' }, false)).toEqual({ memoryWeight: 300, balloonPolicy: 'auto' });
    expect(parseVmPatch(record(), {}, false)).toEqual({});
  });

  it('refuses unknown settings, and resize settings while the VM runs, naming them', () => {
    expect(refusal(() => parseVmPatch(record(), { colour: 'red' }, false))).toEqual({
      code: 'invalid_argument',
      message: "modifyvm does not know the setting 'colour'",
    });
    expect(refusal(() => parseVmPatch(record(), { memoryMib: 1024, pageFusion: true }, true))).toEqual({
      code: 'vm_running',
      message: "VM 'a' is running: modifyvm needs the VM powered off (to change memoryMib, pageFusion)",
    });
    expect(parseVmPatch(record(), { memoryWeight: 5 }, true)).toEqual({ memoryWeight: 5 });
  });

  it('checks the default balloon against the 90 % rule of the new memory', () => {
    expect(refusal(() => parseVmPatch(record(), { defaultBalloonMib: 461 }, false))?.code).toBe('out_of_range');
    expect(parseVmPatch(record(), { defaultBalloonMib: 460 }, false)).toEqual({ defaultBalloonMib: 460 });
    // A smaller memory makes the stored default balloon too large.
    expect(refusal(() => parseVmPatch(record({ defaultBalloonMib: 400 }), { memoryMib: 256 }, false))?.message).toMatch(/largest allowed is 230 MiB/);
  });

  it('keeps the stored minimum and maximum within a new memory size', () => {
    expect(refusal(() => parseVmPatch(record({ memoryMinMib: 300 }), { memoryMib: 256 }, false))?.message).toBe(
      "memoryMinMib 300 MiB of VM 'a' is above its memory of 256 MiB: lower it too (--memory-min)",
    );
    expect(refusal(() => parseVmPatch(record({ balloonMaxMib: 400 }), { memoryMib: 256 }, false))?.message).toMatch(
      /^balloonMaxMib 400 MiB of VM 'a' is 90 % or more/,
    );
    expect(parseVmPatch(record({ balloonMaxMib: 400 }), { memoryMib: 256, balloonMaxMib: 0 }, false)).toEqual({ memoryMib: 256, balloonMaxMib: 0 });
    // null unsets it as 0 does (the API shows an unset maximum as null).
    expect(parseVmPatch(record({ balloonMaxMib: 400 }), { balloonMaxMib: null }, false)).toEqual({ balloonMaxMib: 0 });
  });

  it('checks types and ranges of the policy settings', () => {
    expect(refusal(() => parseVmPatch(record(), { pageFusion: 'on' }, false))).toEqual({
      code: 'invalid_argument',
      message: 'pageFusion must be true or false',
    });
    expect(refusal(() => parseVmPatch(record(), { balloonPolicy: 'greedy' }, false))?.code).toBe('invalid_argument');
    expect(refusal(() => parseVmPatch(record(), { memoryWeight: 0 }, false))?.message).toBe('memoryWeight 0 is out of range (1 to 10000)');
    expect(refusal(() => parseVmPatch(record(), { memoryBufferPercent: 101 }, false))?.message).toBe('memoryBufferPercent 101 % is out of range (0 to 100 %)');
    expect(refusal(() => parseVmPatch(record(), { memoryMinMib: 513 }, false))?.code).toBe('out_of_range');
    expect(refusal(() => parseVmPatch(record(), { balloonMaxMib: 461 }, false))?.message).toBe(
      'balloonMaxMib 461 MiB is out of range (0 to 460 MiB, below 90 % of the VM memory; 0 or null: the 90 % rule alone)',
    );
  });
});

describe('parseVmPatchInput (the HTTP edge)', () => {
  it('types a JSON body, leaving the ranges to the service', () => {
    expect(parseVmPatchInput({ memoryMib: 2048, pageFusion: true, balloonPolicy: 'auto', memoryWeight: 0 })).toEqual({
      memoryMib: 2048,
      pageFusion: true,
      balloonPolicy: 'auto',
      memoryWeight: 0,
    });
  });

  it('refuses unknown keys and values of the wrong type', () => {
    expect(refusal(() => parseVmPatchInput({ tokenHash: 'x' }))).toEqual({
      code: 'invalid_argument',
      message: "modifyvm does not know the setting 'tokenHash'",
    });
    expect(refusal(() => parseVmPatchInput({ memoryMib: '1' }))).toEqual({ code: 'invalid_argument', message: 'memoryMib must be a whole number (got "1")' });
    expect(refusal(() => parseVmPatchInput({ memoryWeight: 1.5 }))?.code).toBe('invalid_argument');
    expect(parseVmPatchInput({ balloonMaxMib: null })).toEqual({ balloonMaxMib: null });
    expect(refusal(() => parseVmPatchInput({ memoryMinMib: null }))?.code).toBe('invalid_argument');
    expect(refusal(() => parseVmPatchInput({ pageFusion: 1 }))?.code).toBe('invalid_argument');
    expect(refusal(() => parseVmPatchInput({ balloonPolicy: 'AUTO' }))?.code).toBe('invalid_argument');
  });
});

describe('parseWhole', () => {
  it('refuses what JSON can carry but is not a whole number', () => {
    for (const value of [null, true, '1', [], {}, Number.NaN, Infinity, 2 ** 53, 0.5]) {
      expect(refusal(() => parseWhole(value, 'x', 0, 10))?.code).toBe('invalid_argument');
    }
    expect(parseWhole(10, 'x', 0, 10)).toBe(10);
  });
});
