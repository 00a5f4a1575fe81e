// Synthetic guest workloads: how much memory the guest's programs want each
// round. A workload is a small state machine; an OOM kill resets it.
import type { Prng } from './prng.js';

/** The kinds of synthetic guest the scenarios mix. */
export type WorkloadKind = 'idle' | 'growing' | 'spiky' | 'lying';

/** A workload's parameters, in % of the guest's memory and MiB per round. */
export interface WorkloadSpec {
  readonly kind: WorkloadKind;
  /** Resident use when quiet (% of memory). */
  readonly basePercent: number;
  /** growing: use at the peak (% of memory). spiky: height of a spike above base. */
  readonly peakPercent: number;
  /** growing: MiB added per round. */
  readonly growMibPerRound: number;
  /** growing: rounds held at the peak before the job ends and use drops to base. */
  readonly holdRounds: number;
  /** spiky: chance per round that a spike starts. */
  readonly spikeChancePerRound: number;
}

/** A running workload: `wantMib` is what it uses this round. */
export interface Workload {
  readonly spec: WorkloadSpec;
  /** Advances one round; returns the memory the programs now use (MiB). */
  advance(rng: Prng): number;
  /** The OOM killer struck: the programs restart from their base. */
  kill(): void;
}

/** Builds a workload for a guest of memoryMib. */
export function createWorkload(spec: WorkloadSpec, memoryMib: number): Workload {
  const baseMib = (memoryMib * spec.basePercent) / 100;
  const peakMib = (memoryMib * spec.peakPercent) / 100;
  let noiseMib = 0;
  let useMib = baseMib;
  let heldRounds = 0;
  let spikeLeftRounds = 0;
  let spikeHeightMib = 0;
  return {
    spec,
    advance(rng) {
      // A bounded random walk: resident sets wobble by about 1 % of memory.
      noiseMib = Math.max(-0.02 * memoryMib, Math.min(0.02 * memoryMib, noiseMib + (rng.next() - 0.5) * 0.01 * memoryMib));
      switch (spec.kind) {
        case 'idle':
        case 'lying':
          return Math.max(0, baseMib + noiseMib);
        case 'growing':
          if (useMib < peakMib) useMib = Math.min(peakMib, useMib + spec.growMibPerRound);
          else if (++heldRounds >= spec.holdRounds) {
            useMib = baseMib;
            heldRounds = 0;
          }
          return Math.max(0, useMib + noiseMib);
        case 'spiky': {
          if (spikeLeftRounds <= 0 && rng.next() < spec.spikeChancePerRound) {
            spikeLeftRounds = rng.int(10, 60);
            spikeHeightMib = peakMib * (0.5 + 0.5 * rng.next());
          }
          let spikeMib = 0;
          if (spikeLeftRounds > 0) {
            spikeLeftRounds -= 1;
            spikeMib = spikeHeightMib;
          }
          return Math.max(0, baseMib + noiseMib + spikeMib);
        }
      }
    },
    kill() {
      useMib = baseMib;
      heldRounds = 0;
      spikeLeftRounds = 0;
    },
  };
}
