// Builders for hand-made policy inputs, shared by the tests (not exported from index.ts).
import type { PolicyGuestStats, PolicyInput, PolicyVmInput, PolicyVmSettings } from './types.js';

/** Settings of a 4 GiB guest as the tests use them unless told otherwise. */
export function testSettings(overrides: Partial<PolicyVmSettings> = {}): PolicyVmSettings {
  return { memoryMinMib: 256, balloonMaxMib: 3686, memoryWeight: 100, memoryBufferPercent: 20, ...overrides };
}

/** Quiet stats with the given available memory. */
export function testStats(availableMib: number, overrides: Partial<PolicyGuestStats> = {}): PolicyGuestStats {
  return {
    availableMib,
    freeMib: Math.max(0, availableMib - 100),
    cacheMib: Math.min(100, availableMib),
    psiSomeAvg10Percent: 0,
    psiFullAvg10Percent: 0,
    ...overrides,
  };
}

/** A 4 GiB VM at its target. */
export function testVm(name: string, balloonMib: number, stats: PolicyGuestStats | undefined, overrides: Partial<PolicyVmInput> = {}): PolicyVmInput {
  return { name, memoryMib: 4096, targetMib: balloonMib, actualMib: balloonMib, settings: testSettings(), stats, ...overrides };
}

/** An input whose pool free quota is what the VMs leave of poolSizeMib. */
export function testInput(vms: readonly PolicyVmInput[], poolSizeMib: number, nowMs = 0): PolicyInput {
  const heldMib = vms.reduce((s, vm) => s + vm.memoryMib - Math.min(vm.targetMib, vm.actualMib), 0);
  return { nowMs, poolSizeMib, poolFreeMib: poolSizeMib - heldMib, vms };
}
