// Runs every engine on every scenario: what `npm run simulate` prints.
import { momDefaultPolicy } from '../baselines/momDefault.js';
import { vboxBalloonCtrlPolicy } from '../baselines/vboxBalloonCtrl.js';
import { ourPolicy } from '../engine.js';
import type { BalloonPolicy } from '../types.js';
import { oraclePolicy } from './oracle.js';
import { standardScenarios } from './scenarios.js';
import { simulate, type SimResult } from './simulator.js';

/** The engines of the comparison: ours first, then the baselines, then the oracle (the best possible, knowing the future). */
export function comparisonEngines(): BalloonPolicy<unknown>[] {
  return [ourPolicy(), vboxBalloonCtrlPolicy(), momDefaultPolicy(), oraclePolicy()] as BalloonPolicy<unknown>[];
}

/** Every engine on every standard scenario, with one seed per scenario (the same for each engine). */
export function runComparison(seed = 7, rounds = 3000): SimResult[] {
  const results: SimResult[] = [];
  standardScenarios(rounds).forEach((scenario, i) => {
    for (const engine of comparisonEngines()) results.push(simulate(scenario, engine, seed * 1000 + i));
  });
  return results;
}
