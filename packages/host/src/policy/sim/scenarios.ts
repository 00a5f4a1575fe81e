// The scenarios of the comparison table. Guests are 4 GiB unless said
// otherwise; every pool is overcommitted, so balloons must stay inflated
// somewhere, and the question is always where.
import { balloonLimitMib } from '../../pool/balloon-rules.js';
import type { PolicyVmSettings } from '../types.js';
import type { Scenario, SimGuestSpec } from './simulator.js';
import type { WorkloadSpec } from './workloads.js';

const GIB = 1024;

/** Settings as a user would set them: 10 % minimum, balloon max at the 90 % rule, 20 % buffer. */
function settings(memoryMib: number, memoryWeight = 100): PolicyVmSettings {
  return {
    memoryMinMib: Math.round(memoryMib * 0.1),
    balloonMaxMib: balloonLimitMib(memoryMib),
    memoryWeight,
    memoryBufferPercent: 20,
  };
}

const idle: WorkloadSpec = { kind: 'idle', basePercent: 20, peakPercent: 0, growMibPerRound: 0, holdRounds: 0, spikeChancePerRound: 0 };
const lying: WorkloadSpec = { ...idle, kind: 'lying' };
const growing = (peakPercent = 75, growMibPerRound = 4, holdRounds = 300): WorkloadSpec => ({
  kind: 'growing',
  basePercent: 20,
  peakPercent,
  growMibPerRound,
  holdRounds,
  spikeChancePerRound: 0,
});
const spiky: WorkloadSpec = { kind: 'spiky', basePercent: 25, peakPercent: 45, growMibPerRound: 0, holdRounds: 0, spikeChancePerRound: 0.01 };

function guest(name: string, workload: WorkloadSpec, initialBalloonMib: number, memoryMib = 4 * GIB, memoryWeight = 100): SimGuestSpec {
  return { name, memoryMib, settings: settings(memoryMib, memoryWeight), workload, initialBalloonMib };
}

/** The scenarios of `npm run simulate`, each `rounds` long. */
export function standardScenarios(rounds = 3000): Scenario[] {
  return [
    {
      name: 'idle',
      poolSizeMib: 12 * GIB,
      rounds,
      guests: [1, 2, 3, 4].map((i) => guest(`idle${i}`, idle, GIB)),
      contenders: [],
    },
    {
      name: 'growing',
      poolSizeMib: 12 * GIB,
      rounds,
      guests: [guest('grow1', growing(), GIB), guest('idle1', idle, GIB), guest('idle2', idle, GIB), guest('idle3', idle, GIB)],
      contenders: [],
    },
    {
      name: 'spiky',
      poolSizeMib: 12 * GIB,
      rounds,
      guests: [guest('spiky1', spiky, GIB), guest('spiky2', spiky, GIB), guest('idle1', idle, GIB), guest('idle2', idle, GIB)],
      contenders: [],
    },
    {
      // Tight: the liar and the honest grower cannot both have what they ask for.
      name: 'lying',
      poolSizeMib: 10 * GIB,
      rounds,
      guests: [guest('liar', lying, 1536), guest('grow1', growing(80), 1536), guest('idle1', idle, 1536), guest('idle2', idle, 1536)],
      contenders: ['liar', 'grow1'],
    },
    {
      // Two growers with weights 300 and 100 that cannot both peak.
      name: 'weighted',
      poolSizeMib: 10 * GIB,
      rounds,
      guests: [
        guest('heavy', growing(85, 4, 600), 1536, 4 * GIB, 300),
        guest('light', growing(85, 4, 600), 1536, 4 * GIB, 100),
        guest('idle1', idle, 1536),
        guest('idle2', idle, 1536),
      ],
      contenders: ['heavy', 'light'],
    },
    {
      name: 'mixed',
      poolSizeMib: 24 * GIB,
      rounds,
      guests: [
        guest('idle1', idle, 4 * GIB, 8 * GIB),
        guest('idle2', idle, GIB, 2 * GIB),
        guest('grow1', growing(70, 8), 2 * GIB, 8 * GIB, 200),
        guest('grow2', growing(80, 3, 500), GIB),
        guest('spiky1', spiky, GIB),
        guest('spiky2', spiky, 512, 2 * GIB),
        guest('liar', lying, 1536),
        guest('idle3', idle, GIB, 4 * GIB, 1000),
      ],
      contenders: ['grow1', 'grow2', 'liar'],
    },
  ];
}
