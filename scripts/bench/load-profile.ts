// One load run against one host (or both), for profiling the host: one
// guest count, JSON out. Extra arguments go to the host's node:
//
//   NODE_OPTIONS=--conditions=@memballoon/source node --import tsx \
//     scripts/bench/load-profile.ts [ours|null|both] [GUESTS] [ROUNDS] -- --cpu-prof --cpu-prof-dir=/tmp/prof
//
// The host writes its profile when the run stops it (SIGTERM → exit).
import { runLoadBench } from './load.js';

const dash = process.argv.indexOf('--');
const own = dash === -1 ? process.argv.slice(2) : process.argv.slice(2, dash);
const hostNodeArgs = dash === -1 ? [] : process.argv.slice(dash + 1);
const hosts = own[0] === 'null' || own[0] === 'both' ? own[0] : 'ours';
const guests = Number(own[1] ?? 1000);
const rounds = Number(own[2] ?? 8);
if (!Number.isInteger(guests) || guests < 1 || !Number.isInteger(rounds) || rounds < 1) {
  console.error('usage: load-profile.ts [ours|null|both] [GUESTS] [ROUNDS] [-- NODE_FLAGS…]');
  process.exit(2);
}
const results = await runLoadBench({ guests, rounds, hosts, hostNodeArgs });
console.log(JSON.stringify(results, null, 2));
