// The settings of createvm and modifyvm, parsed from what the admin API hands
// over (JSON values, untrusted) into typed, range-checked settings. Pure: no
// registry, no pool; it throws HostError with a message that names the limit.
import { MAX_MEMORY_MIB, vmNameProblem } from '@memballoon/protocol';
import { HostError } from '../errors.js';
import { balloonLimitMib, balloonTargetProblem } from '../pool/balloon-rules.js';
import type { VmRecord, VmSettings } from '../registry/registry.js';

/** Settings that resize a VM: modifyvm takes them only while it is powered off (as VirtualBox does). */
export const RESIZE_SETTINGS = ['memoryMib', 'defaultBalloonMib', 'pageFusion'] as const;

/** Settings that steer the automatic policy: modifyvm takes them any time. */
export const POLICY_SETTINGS = ['balloonPolicy', 'memoryMinMib', 'balloonMaxMib', 'memoryWeight', 'memoryBufferPercent'] as const;

/** Every setting modifyvm knows. */
export type VmSettingName = (typeof RESIZE_SETTINGS)[number] | (typeof POLICY_SETTINGS)[number];

/** What createvm takes. */
export interface CreateVmInput {
  name: string;
  memoryMib: number;
}

/** What modifyvm may change (every field optional; resize settings only while the VM is off). */
export interface VmPatch {
  memoryMib?: number;
  defaultBalloonMib?: number;
  pageFusion?: boolean;
  balloonPolicy?: 'manual' | 'auto';
  memoryMinMib?: number;
  /** 0: not set (only the 90 % rule). */
  /** null (or 0): not set, the 90 % rule alone. */
  balloonMaxMib?: number | null;
  memoryWeight?: number;
  memoryBufferPercent?: number;
}

/** Parses createvm's input (from JSON or a library caller): a valid VM name and a memory size in range. */
export function parseCreateVm(input: { readonly name: unknown; readonly memoryMib: unknown }): CreateVmInput {
  return { name: parseVmName(input.name), memoryMib: parseWhole(input.memoryMib, 'memoryMib', 1, MAX_MEMORY_MIB) };
}

/** A VM name, or invalid_argument saying what is wrong with it. */
export function parseVmName(value: unknown): string {
  if (typeof value !== 'string') throw new HostError('invalid_argument', 'the VM name is missing');
  const problem = vmNameProblem(value);
  if (problem) throw new HostError('invalid_argument', problem);
  return value;
}

/**
 * Parses a modifyvm request body at the HTTP edge into a VmPatch: every key
 * known, every value of the right type (ranges are the service's to check,
 * against the VM's record: parseVmPatch).
 */
export function parseVmPatchInput(body: Readonly<Record<string, unknown>>): VmPatch {
  const known = new Set<string>([...RESIZE_SETTINGS, ...POLICY_SETTINGS]);
  const patch: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (!known.has(key)) throw new HostError('invalid_argument', `modifyvm does not know the setting '${key}'`);
    if (value === undefined) continue;
    if (key === 'pageFusion') {
      if (typeof value !== 'boolean') throw new HostError('invalid_argument', 'pageFusion must be true or false');
    } else if (key === 'balloonPolicy') {
      if (value !== 'manual' && value !== 'auto') throw new HostError('invalid_argument', "balloonPolicy must be 'manual' or 'auto'");
    } else if (key === 'balloonMaxMib' && value === null) {
      // Unsets it, as the API shows an unset maximum.
    } else if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      throw new HostError('invalid_argument', `${key} must be a whole number (got ${JSON.stringify(value)})`);
    }
    patch[key] = value;
  }
  return patch as VmPatch;
}

/**
 * Parses modifyvm's patch against the VM's current record: unknown settings
 * are refused, resize settings are refused while the VM runs, every value is
 * range-checked, and the result leaves no stored limit beyond a new memory
 * size. Returns only the settings the patch changes.
 */
export function parseVmPatch(record: VmRecord, patch: Readonly<VmPatch> | Readonly<Record<string, unknown>>, running: boolean): VmSettings {
  const name = record.name;
  // A library caller's VmPatch is checked like JSON: the types promise, the values may still be out of range.
  patch = patch as Readonly<Record<string, unknown>>;
  const known = new Set<string>([...RESIZE_SETTINGS, ...POLICY_SETTINGS]);
  for (const key of Object.keys(patch)) {
    if (!known.has(key)) throw new HostError('invalid_argument', `modifyvm does not know the setting '${key}'`);
  }
  const resizing = RESIZE_SETTINGS.filter((k) => patch[k] !== undefined);
  if (running && resizing.length > 0) {
    throw new HostError('vm_running', `VM '${name}' is running: modifyvm needs the VM powered off (to change ${resizing.join(', ')})`);
  }
  const s: VmSettings = {};
  if (patch.memoryMib !== undefined) s.memoryMib = parseWhole(patch.memoryMib, 'memoryMib', 1, MAX_MEMORY_MIB);
  const memoryMib = s.memoryMib ?? record.memoryMib;
  if (patch.defaultBalloonMib !== undefined) s.defaultBalloonMib = parseWhole(patch.defaultBalloonMib, 'defaultBalloonMib', 0, MAX_MEMORY_MIB);
  const problem = balloonTargetProblem(s.defaultBalloonMib ?? record.defaultBalloonMib, memoryMib, name);
  if (problem) throw new HostError('out_of_range', problem);
  if (patch.pageFusion !== undefined) {
    if (typeof patch.pageFusion !== 'boolean') throw new HostError('invalid_argument', 'pageFusion must be true or false');
    s.pageFusion = patch.pageFusion;
  }
  if (patch.balloonPolicy !== undefined) {
    if (patch.balloonPolicy !== 'manual' && patch.balloonPolicy !== 'auto') throw new HostError('invalid_argument', "balloonPolicy must be 'manual' or 'auto'");
    s.balloonPolicy = patch.balloonPolicy;
  }
  const limitMib = balloonLimitMib(memoryMib);
  if (patch.memoryMinMib !== undefined) s.memoryMinMib = parseWhole(patch.memoryMinMib, 'memoryMinMib', 0, memoryMib);
  // null (or 0) unsets it: the 90 % rule alone.
  if (patch.balloonMaxMib !== undefined)
    s.balloonMaxMib =
      patch.balloonMaxMib === null
        ? 0
        : parseWhole(patch.balloonMaxMib, 'balloonMaxMib', 0, limitMib, 'below 90 % of the VM memory; 0 or null: the 90 % rule alone');
  if (patch.memoryWeight !== undefined) s.memoryWeight = parseWhole(patch.memoryWeight, 'memoryWeight', 1, 10_000, undefined, '');
  if (patch.memoryBufferPercent !== undefined) s.memoryBufferPercent = parseWhole(patch.memoryBufferPercent, 'memoryBufferPercent', 0, 100, undefined, ' %');
  // A smaller memory must not leave the stored policy limits beyond it.
  const minMib = s.memoryMinMib ?? record.memoryMinMib;
  if (minMib > memoryMib) {
    throw new HostError('out_of_range', `memoryMinMib ${minMib} MiB of VM '${name}' is above its memory of ${memoryMib} MiB: lower it too (--memory-min)`);
  }
  const maxMib = s.balloonMaxMib ?? record.balloonMaxMib;
  if (maxMib > limitMib) {
    throw new HostError(
      'out_of_range',
      `balloonMaxMib ${maxMib} MiB of VM '${name}' is 90 % or more of its memory of ${memoryMib} MiB (the largest allowed is ${limitMib} MiB): lower it too (--balloon-max, 0 for the 90 % rule alone)`,
    );
  }
  return s;
}

/** A whole number in [min, max], or invalid_argument / out_of_range naming the field, the range and the unit. */
export function parseWhole(value: unknown, field: string, min: number, max: number, maxWhy?: string, unit = ' MiB'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new HostError('invalid_argument', `${field} must be a whole number (got ${JSON.stringify(value)})`);
  }
  if (value < min || value > max) {
    throw new HostError('out_of_range', `${field} ${value}${unit} is out of range (${min} to ${max}${unit}${maxWhy ? `, ${maxWhy}` : ''})`);
  }
  return value;
}
