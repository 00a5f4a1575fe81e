// npm run bench: every benchmark of the project, each against a reference
// measured in the same run, printed as Markdown tables (the README's
// "Benchmarks" section is pasted from this output, with its date).
//
//   npm run bench                 all of them
//   npm run bench -- balloon      only some: balloon, fusion, load, cli, handoff
import { formatBenchTable, runBalloonBench } from '../packages/guest-agent/bench/balloon.bench.js';
import { formatKsmdCpu, runFusionBench, type FusionBenchRow } from '../packages/host/bench/fusion.bench.js';
import { formatHandOffTable, runHandOffBench } from '../packages/host/bench/handoff.bench.js';
import { formatBurstTable, runBurstBench } from '../packages/host/bench/handoff-burst.bench.js';
import { runLoadBench, type LoadResult } from './bench/load.js';
import { formatCliBench, runCliBench } from './bench/cli.js';

const all = ['balloon', 'fusion', 'load', 'cli', 'handoff'] as const;
type Which = (typeof all)[number];
const asked = process.argv.slice(2).filter((a): a is Which => (all as readonly string[]).includes(a));
const unknown = process.argv.slice(2).filter((a) => !(all as readonly string[]).includes(a));
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark ${unknown.join(', ')} (choose from ${all.join(', ')})`);
  process.exit(2);
}
const which = asked.length > 0 ? asked : all;
const log = (line: string) => process.stderr.write(`  ${line}\n`);

function formatFusion(rows: FusionBenchRow[]): string {
  // Ours is the hint layer; the reference is the kernel's scan (KSM) of the
  // same guests and regions in the same run; ratio = KSM time / hint time.
  const hints = rows[0];
  const lines = [
    '| method | pages_to_scan | sleep_millisecs | time until sharable (hints) or merged (KSM) | MiB | ratio to hints | ksmd CPU | note |',
    '|---|---|---|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    const t = Number.isNaN(r.timeMs) ? '—' : r.timeMs < 1000 ? `${r.timeMs.toFixed(0)} ms` : `${(r.timeMs / 1000).toFixed(2)} s`;
    const ratio = hints && !Number.isNaN(r.timeMs) ? `${(r.timeMs / hints.timeMs).toFixed(1)}×` : '—';
    lines.push(`| ${r.method} | ${r.pagesToScan} | ${r.sleepMillisecs} | ${t} | ${r.mib.toFixed(1)} | ${ratio} | ${formatKsmdCpu(r)} | ${r.note} |`);
  }
  return lines.join('\n');
}

// One table for every guest count: each count's two hosts ran in the same
// run, one after the other, so each ratio is a same-run ratio.
function formatLoad(runs: LoadResult[][]): string {
  const pairs = runs.map((results) => ({ ours: results.find((r) => r.label.startsWith('memballoon')), ref: results.find((r) => r.label.startsWith('null')) }));
  if (pairs.some((p) => !p.ours || !p.ref)) return '(load benchmark incomplete)';
  const metrics: Array<[string, (r: LoadResult) => number, string, string]> = [
    ['target delivery latency p50 (PUT → guest)', (r) => r.latencyP50Ms, 'ms', ''],
    ['target delivery latency p99 (PUT → guest)', (r) => r.latencyP99Ms, 'ms', 'goal < 100'],
    ['round to all guests, p99', (r) => r.roundP99Ms, 'ms', ''],
    ['host CPU (share of one core)', (r) => r.hostCpuPercent, '%', 'goal ratio ≤ 1.5 at 1,000'],
    ['host RSS', (r) => r.hostRssMib, 'MiB', ''],
    ['targets delivered / sent', (r) => r.targetsDelivered / Math.max(1, r.targetsSent), '', ''],
    ['load average of the machine at the end', (r) => r.loadAverage, '', 'shared by other work'],
  ];
  const head = pairs.map((p) => `${p.ours!.guests.toLocaleString('en-US')} guests: ours | null host | ratio`).join(' | ');
  const lines = [`| metric | ${head} | unit | note |`, `|---|${pairs.map(() => '---:|---:|---:|').join('')}---|---|`];
  for (const [metric, get, unit, note] of metrics) {
    const cells = pairs.map((p) => {
      const a = get(p.ours!);
      const b = get(p.ref!);
      return `${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(2)}`;
    });
    lines.push(`| ${metric} | ${cells.join(' | ')} | ${unit} | ${note} |`);
  }
  return lines.join('\n');
}

console.log(`memballoon benchmarks, ${new Date().toISOString().slice(0, 10)}, ${process.version}\n`);
for (const name of which) {
  console.error(`bench: ${name}…`);
  if (name === 'balloon') {
    const rows = await runBalloonBench({ log });
    console.log(`### Balloon: inflate/deflate against C references (mmap + touch, two threads and one)\n\n${formatBenchTable(rows)}\n`);
  } else if (name === 'fusion') {
    const rows = await runFusionBench();
    console.log(`### Page fusion: hints against KSM scanning\n\n${formatFusion(rows)}\n`);
  } else if (name === 'handoff') {
    const rows = await runHandOffBench({ log });
    console.log(`### Hand-off: balloon settled → memory free on the host (real agent in a v1 memory cgroup)\n\n${formatHandOffTable(rows)}\n`);
    const burst = await runBurstBench({ log });
    console.log(
      `### Hand-off: three startvm guests (512/768/1024 MiB) bursting in turns over a 1536 MiB pool cgroup, three ways\n\n${formatBurstTable(burst)}\n`,
    );
  } else if (name === 'cli') {
    const result = await runCliBench({ log });
    console.log(
      `### Start-up: the built commands against \`node -e 0\` (${result.runs} interleaved runs), and the agent's idle RSS\n\n${formatCliBench(result)}\n`,
    );
  } else {
    const runs = [await runLoadBench({ guests: 1000, rounds: 8 }), await runLoadBench({ guests: 5000, rounds: 4 })];
    console.log(`### Control plane under load: 1,000 and 5,000 simulated guests, stats every 1 s, targets every 3 s\n\n${formatLoad(runs)}\n`);
  }
}
