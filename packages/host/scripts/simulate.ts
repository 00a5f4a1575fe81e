// `npm run simulate`: our balloon policy against VBoxBalloonCtrl's rule and
// MOM's default policy on the same synthetic guests. Deterministic: the same
// seed prints the same table. Usage: simulate.ts [--seed N] [--rounds N]
import { formatFairnessDetail, formatResultsTable } from '../src/policy/sim/table.js';
import { runComparison } from '../src/policy/sim/run.js';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value <= 0) {
    process.stderr.write(`simulate: ${name} needs a positive integer\n`);
    process.exit(2);
  }
  return value;
}

const seed = flag('--seed', 7);
const rounds = flag('--rounds', 3000);
const started = performance.now();
const results = runComparison(seed, rounds);
process.stdout.write(`memballoon policy simulator: seed ${seed}, ${rounds} rounds per scenario\n\n`);
process.stdout.write(`${formatResultsTable(results)}\n\n`);
process.stdout.write('Contenders: memory above the floor per unit of weight (MiB) while all wanted more; OOM kills per VM:\n');
process.stdout.write(`${formatFairnessDetail(results, ['idle', 'growing', 'spiky', 'lying', 'weighted', 'mixed'])}\n`);
process.stdout.write(`\n(${Math.round(performance.now() - started)} ms)\n`);
const ours = results.filter((r) => r.engine === 'memballoon' && r.invariantViolations > 0);
if (ours.length > 0) {
  process.stderr.write(`simulate: our engine broke a rule in ${ours.map((r) => r.scenario).join(', ')}\n`);
  process.exitCode = 1;
}
