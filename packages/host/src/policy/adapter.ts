// From the admin API's view of a VM to the engine's input, so the host's timer
// can feed the engine straight from what `showvminfo --json` would print.
import type { VmView } from '../api/views.js';
import type { PolicyVmInput } from './types.js';

/** The engine's input for a VM, or undefined unless it runs in auto mode with a balloon. */
export function policyVmInputFromView(view: VmView): PolicyVmInput | undefined {
  if (view.state !== 'running' || view.balloonPolicy !== 'auto' || view.balloon === undefined) return undefined;
  const stats = view.stats;
  return {
    name: view.name,
    memoryMib: view.memoryMib,
    targetMib: view.balloon.targetMib,
    actualMib: view.balloon.actualMib,
    settings: {
      memoryMinMib: view.memoryMinMib,
      balloonMaxMib: view.balloonMaxMib,
      memoryWeight: view.memoryWeight,
      memoryBufferPercent: view.memoryBufferPercent,
    },
    stats:
      stats === undefined
        ? undefined
        : {
            availableMib: stats.availableMib,
            freeMib: stats.freeMib,
            cacheMib: stats.cacheMib,
            psiSomeAvg10Percent: stats.psiSomeAvg10Percent,
            psiFullAvg10Percent: stats.psiFullAvg10Percent,
          },
  };
}
