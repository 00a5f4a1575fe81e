// From the admin API's view of a VM to the engine's input, so the host's timer
// can feed the engine straight from what `showvminfo --json` would print.
// This is the one place where the registry's meaning of a setting becomes the
// engine's: the registry stores balloonMaxMib = 0 for "not set" (only the
// 90 % rule limits the policy). The engine's cap (policyBalloonCapMib, the
// pool's autoBalloonCapMib) reads it the same way; the baselines read the
// figure literally, so it is made explicit here. The host's policy loop goes
// through here, never around it.
import type { VmView } from '../service/views.js';
import { balloonLimitMib } from '../pool/balloon-rules.js';
import type { PolicyVmInput } from './types.js';

/** The engine's balloon max for the registry's value: 0 ("not set") becomes the 90 % rule. */
export function engineBalloonMaxMib(registryBalloonMaxMib: number | null, memoryMib: number): number {
  return registryBalloonMaxMib !== null && registryBalloonMaxMib > 0 ? registryBalloonMaxMib : balloonLimitMib(memoryMib);
}

/** The engine's input for a VM, or undefined unless it runs in auto mode with a balloon. */
export function policyVmInputFromView(view: VmView): PolicyVmInput | undefined {
  if (view.state !== 'running' || view.balloonPolicy !== 'auto' || view.balloon === undefined) return undefined;
  const stats = view.stats;
  return {
    name: view.name,
    memoryMib: view.memoryMib,
    // A balloon that stopped short of its newest target (guest floor, or the
    // guest deflated on its own under pressure) will not move until it gets a
    // new one. To the engine a target above the actual is memory on its way;
    // this one is not, and counting it would stop the engine from reclaiming
    // elsewhere, e.g. to pay back a pool the guest's own deflate overcommitted.
    targetMib: view.balloon.state === 'short' ? Math.min(view.balloon.targetMib, view.balloon.actualMib) : view.balloon.targetMib,
    actualMib: view.balloon.actualMib,
    settings: {
      memoryMinMib: view.memoryMinMib,
      balloonMaxMib: engineBalloonMaxMib(view.balloonMaxMib, view.memoryMib),
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
            // Tells the engine a new sample from one it already saw (rounds may outpace reports).
            sampledAtMs: stats.receivedAtMs,
          },
  };
}
