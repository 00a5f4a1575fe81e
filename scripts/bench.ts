// npm run bench: every benchmark of the project, each against a reference
// measured in the same run, printed as Markdown tables (the README's
// "Benchmarks" section is pasted from this output, with its date).
//
//   npm run bench                 all of them
//   npm run bench -- balloon      only some: balloon, fusion, load, cli, handoff
import { formatBenchTable, runBalloonBench } from '../packages/guest-agent/bench/balloon.bench.js';
import { runFusionBench, type FusionBenchRow } from '../packages/host/bench/fusion.bench.js';
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
  const lines = ['| method | pages_to_scan | sleep_millisecs | time until sharable (hints) or merged (KSM) | MiB | ratio to hints | note |', '|---|---|---|---:|---:|---:|---|'];
  for (const r of rows) {
    const t = Number.isNaN(r.timeMs) ? '—' : r.timeMs < 1000 ? `${r.timeMs.toFixed(0)} ms` : `${(r.timeMs / 1000).toFixed(2)} s`;
    const ratio = hints && !Number.isNaN(r.timeMs) ? `${(r.timeMs / hints.timeMs).toFixed(1)}×` : '—';
    lines.push(`| ${r.method} | ${r.pagesToScan} | ${r.sleepMillisecs} | ${t} | ${r.mib.toFixed(1)} | ${ratio} | ${r.note} |`);
  }
  return lines.join('\n');
}

function formatLoad(results: LoadResult[]): string {
  const ref = results.find((r) => r.label.startsWith('null'));
  const ours = results.find((r) => r.label.startsWith('memballoon'));
  if (!ref || !ours) return '(load benchmark incomplete)';
  const rows: Array<[string, number, number, string, string]> = [
    ['target delivery latency p50 (PUT → guest)', ours.latencyP50Ms, ref.latencyP50Ms, 'ms', ''],
    ['target delivery latency p99 (PUT → guest)', ours.latencyP99Ms, ref.latencyP99Ms, 'ms', 'goal < 100'],
    [`round to all ${ours.guests} guests, p99`, ours.roundP99Ms, ref.roundP99Ms, 'ms', ''],
    ['host CPU (share of one core)', ours.hostCpuPercent, ref.hostCpuPercent, '%', 'goal < 25'],
    ['host RSS', ours.hostRssMib, ref.hostRssMib, 'MiB', ''],
    ['targets delivered / sent', ours.targetsDelivered, ours.targetsSent, '', ''],
  ];
  const lines = ['| metric | memballoon host | null host (reference) | ratio (ours / reference) | unit | note |', '|---|---:|---:|---:|---|---|'];
  for (const [metric, a, b, unit, note] of rows) lines.push(`| ${metric} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(2)} | ${unit} | ${note} |`);
  return lines.join('\n');
}

console.log(`memballoon benchmarks, ${new Date().toISOString().slice(0, 10)}, ${process.version}\n`);
for (const name of which) {
  console.error(`bench: ${name}…`);
  if (name === 'balloon') {
    const rows = await runBalloonBench({ log });
    console.log(`### Balloon: inflate/deflate against a C baseline (mmap + touch, one thread)\n\n${formatBenchTable(rows)}\n`);
  } else if (name === 'fusion') {
    const rows = await runFusionBench();
    console.log(`### Page fusion: hints against KSM scanning\n\n${formatFusion(rows)}\n`);
  } else if (name === 'handoff') {
    const rows = await runHandOffBench({ log });
    console.log(`### Hand-off: balloon settled → memory free on the host (real agent in a v1 memory cgroup)\n\n${formatHandOffTable(rows)}\n`);
    const burst = await runBurstBench({ log });
    console.log(`### Hand-off: three startvm guests (512/768/1024 MiB) bursting in turns over a 1536 MiB pool cgroup, three ways\n\n${formatBurstTable(burst)}\n`);
  } else if (name === 'cli') {
    const result = await runCliBench({ log });
    console.log(`### Start-up: the built commands against \`node -e 0\` (${result.runs} interleaved runs), and the agent's idle RSS\n\n${formatCliBench(result)}\n`);
  } else {
    const results = await runLoadBench();
    console.log(`### Control plane under load: 1,000 simulated guests, stats every 1 s, targets every 3 s\n\n${formatLoad(results)}\n`);
  }
}
