// Formats simulator results as the Markdown table of README.md.
import type { SimResult } from './simulator.js';

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');

/** One Markdown table: a row per scenario and engine. */
export function formatResultsTable(results: readonly SimResult[]): string {
  const header = [
    'scenario',
    'engine',
    'pressure episodes',
    'rounds to relieve (mean / max)',
    'unrelieved',
    'pressure % of rounds',
    'OOM',
    'direction changes per VM (mean / max)',
    'fairness (Jain)',
    'violations',
    'refused',
  ];
  const rows = results.map((r) => [
    r.scenario,
    r.engine,
    String(r.pressureEpisodes),
    `${f1(r.reliefRoundsMean)} / ${r.reliefRoundsMax}`,
    String(r.unrelievedEpisodes),
    f1(r.pressureRoundsPercent),
    String(r.oomEvents),
    `${f1(r.directionChangesMeanPerVm)} / ${r.directionChangesMaxPerVm}`,
    Number.isNaN(r.fairnessJain) ? '-' : r.fairnessJain.toFixed(2),
    String(r.invariantViolations),
    String(r.refusedChanges),
  ]);
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Memory given above the floor per unit of weight, per VM, for the scenarios with contenders. */
export function formatFairnessDetail(results: readonly SimResult[], scenarioNames: readonly string[]): string {
  const out: string[] = [];
  for (const r of results) {
    if (!scenarioNames.includes(r.scenario)) continue;
    const parts = Object.entries(r.givenMibPerWeight).map(([name, x]) => `${name} ${x.toFixed(1)}`);
    const ooms = Object.entries(r.oomEventsByVm)
      .filter(([, n]) => n > 0)
      .map(([name, n]) => `${name} ${n}`);
    out.push(`- ${r.scenario} / ${r.engine}: ${parts.join(', ')} (over ${r.contendedRounds} contended rounds); OOM: ${ooms.join(', ') || 'none'}`);
  }
  return out.join('\n');
}
