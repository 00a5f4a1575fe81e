// The burst scenario of issue 14 run three ways in one run, on the real
// kernel under a pool cgroup of 1536 MiB: three startvm guests (512, 768,
// 1024 MiB) whose workloads grow to a peak in turns (the sum of the peaks
// with their agents exceeds the pool):
//   static   no balloons: fixed limits splitting the pool by memory size;
//   budget   today's mode: the automatic policy moves balloons, but a balloon
//            only pins memory inside its guest (no hand-off);
//   hand-off the automatic policy with hand-off.
// The workload waits for room in its cgroup for up to WAIT_MS per step, then
// takes the memory anyway, as a service whose load does not wait would:
// where the host gives it no room the kernel must reclaim, and OOM-kills.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHost, type HostHandle } from '../src/server.js';
import { handOffBenchSkipReason } from './handoff.bench.js';

const MIB = 1024 * 1024;
const V1 = '/sys/fs/cgroup/memory';
const POOL_MIB = 1536;
const GUESTS = [
  { name: 'ga', memoryMib: 512, peakMib: 288 },
  { name: 'gb', memoryMib: 768, peakMib: 480 },
  { name: 'gc', memoryMib: 1024, peakMib: 672 },
];
/** How long a workload step waits for room before it takes the memory anyway. */
const WAIT_MS = 5000;
const WORKLOAD = fileURLToPath(new URL('../../../test/fixtures/burst-workload.mjs', import.meta.url));

/** The three ways. */
export type BurstMode = 'static' | 'budget' | 'hand-off';

/** One row of the table. */
export interface BurstRow {
  mode: BurstMode;
  completed: number;
  bursts: number;
  oomKills: number;
  poolFailcnt: number;
  guestFailcnt: number;
  /** Largest sum of the guests' limits seen, MiB. */
  maxLimitSumMib: number;
  note: string;
}

const num = (file: string): number => Number(readFileSync(file, 'utf8'));
const oomKillsOf = (dir: string): number => Number(/^oom_kill (\d+)$/m.exec(readFileSync(join(dir, 'memory.oom_control'), 'utf8'))?.[1] ?? 0);

async function until(probe: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return probe();
}

async function api(host: HostHandle, path: string, body: unknown): Promise<void> {
  const res = await fetch(`${host.url}/api/v1${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
}

async function runOne(mode: BurstMode, log: (line: string) => void): Promise<BurstRow> {
  const parentName = `memballoon-bench-burst-${process.pid}-${Date.now()}`;
  const parentDir = join(V1, parentName);
  const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-bench-'));
  const host = await startHost({
    listenPort: 0,
    dataDir,
    // Static: no balloon ever moves, so the host's budget is every guest's
    // memory; the kernel holds them to the pool (parent) and the split below.
    poolSizeMib: mode === 'static' ? GUESTS.reduce((s, g) => s + g.memoryMib, 0) : POOL_MIB,
    insecureNoAuth: true,
    dashboard: false,
    fusion: false,
    policyIntervalMs: mode === 'static' ? 0 : 200,
    policyMarginMib: 32,
    guests: { cgroupParent: parentName, poolCgroup: mode !== 'static', pathEnv: process.env.PATH ?? '/usr/bin:/bin' },
    // Budget and static: no guest is handed off (the pool stays a number).
    ...(mode === 'hand-off' ? {} : { cgroupOf: () => null }),
  }).catch((err: unknown) => {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  let maxLimitSumMib = 0;
  // Counters are kept as the largest seen: a guest whose agent is OOM-killed is powered off and its cgroup removed.
  const oomKills = new Map<string, number>();
  const failcnts = new Map<string, number>();
  let poolFailcnt = 0;
  const sample = () => {
    let sum = 0;
    try {
      for (const g of GUESTS) {
        const d = join(parentDir, g.name);
        if (!existsSync(d)) continue;
        const limitMib = num(join(d, 'memory.limit_in_bytes')) / MIB;
        // A cgroup just made has no limit yet (nothing runs in it): not a guest's limit.
        if (limitMib < 2 ** 40) sum += limitMib;
        oomKills.set(g.name, Math.max(oomKills.get(g.name) ?? 0, oomKillsOf(d)));
        failcnts.set(g.name, Math.max(failcnts.get(g.name) ?? 0, num(join(d, 'memory.failcnt'))));
      }
      if (existsSync(parentDir)) poolFailcnt = Math.max(poolFailcnt, num(join(parentDir, 'memory.failcnt')));
    } catch {
      // A cgroup removed while we read it: the next sample has it right.
    }
    maxLimitSumMib = Math.max(maxLimitSumMib, sum);
  };
  const sampler = setInterval(sample, 10);
  const logOf = (name: string): string => {
    const f = join(dataDir, 'logs', `${name}.log`);
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  };
  let completed = 0;
  let note = '';
  try {
    for (const g of GUESTS) {
      host.service.createVm({ name: g.name, memoryMib: g.memoryMib });
      if (mode !== 'static') host.service.modifyVm(g.name, { balloonPolicy: 'auto' });
    }
    for (const g of GUESTS) {
      await api(host, `/vms/${g.name}/startvm`, { command: [process.execPath, WORKLOAD, String(g.peakMib), '8', '48', String(WAIT_MS)] });
      await until(() => logOf(g.name).includes('ready'), 60_000);
    }
    if (mode === 'static') {
      // A fixed split of the pool by memory size, and the pool as the parent's limit.
      const share = (m: number) => Math.floor((POOL_MIB * m) / GUESTS.reduce((s, x) => s + x.memoryMib, 0));
      for (const g of GUESTS) writeFileSync(join(parentDir, g.name, 'memory.limit_in_bytes'), String(share(g.memoryMib) * MIB));
      writeFileSync(join(parentDir, 'memory.limit_in_bytes'), String(POOL_MIB * MIB));
      // The split holds from here on (startvm gave each guest its whole memory first).
      maxLimitSumMib = 0;
    }
    for (const g of GUESTS) {
      if (!existsSync(join(parentDir, g.name))) {
        // Powered off: its agent died (an OOM kill in a pool that had no room).
        note += `${g.name} was gone before its burst. `;
        log(`${mode}: ${g.name} is gone before its burst`);
        continue;
      }
      const pid = readFileSync(join(parentDir, g.name, 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .find((p) => {
          try {
            return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')[1] === WORKLOAD;
          } catch {
            return false;
          }
        });
      if (pid === undefined) {
        log(`${mode}: ${g.name}'s workload is gone (OOM-killed before its burst?)`);
        continue;
      }
      const peaks = () =>
        logOf(g.name)
          .split('\n')
          .filter((l) => l.startsWith('peak')).length;
      const before = peaks();
      process.kill(pid, 'SIGUSR1');
      const done = await until(() => peaks() > before || !existsSync(`/proc/${pid}`), 120_000);
      if (done && existsSync(`/proc/${pid}`)) completed++;
      log(`${mode}: ${g.name} burst to ${g.peakMib} MiB ${done && existsSync(`/proc/${pid}`) ? 'completed' : 'did not complete'}`);
      if (existsSync(`/proc/${pid}`)) {
        process.kill(pid, 'SIGUSR2');
        await until(() => logOf(g.name).trimEnd().endsWith('idle') || !existsSync(`/proc/${pid}`), 60_000);
      }
    }
  } catch (err) {
    note = err instanceof Error ? err.message.slice(0, 120) : String(err);
  }
  sample();
  clearInterval(sampler);
  try {
    await host.close();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  await until(() => {
    try {
      if (existsSync(parentDir)) {
        for (const e of readdirSync(parentDir, { withFileTypes: true })) if (e.isDirectory()) rmdirSync(join(parentDir, e.name));
        rmdirSync(parentDir);
      }
      return true;
    } catch {
      return false;
    }
  }, 30_000);
  const sumOf = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return {
    mode,
    completed,
    bursts: GUESTS.length,
    oomKills: sumOf(oomKills),
    poolFailcnt,
    guestFailcnt: sumOf(failcnts),
    maxLimitSumMib: Math.round(maxLimitSumMib),
    note,
  };
}

/** Runs the scenario the three ways. */
export async function runBurstBench(options: { log?: (line: string) => void } = {}): Promise<BurstRow[]> {
  const log = options.log ?? (() => {});
  const skip = handOffBenchSkipReason();
  const modes: BurstMode[] = ['static', 'budget', 'hand-off'];
  if (skip)
    return modes.map((mode) => ({ mode, completed: 0, bursts: GUESTS.length, oomKills: 0, poolFailcnt: 0, guestFailcnt: 0, maxLimitSumMib: 0, note: skip }));
  const rows: BurstRow[] = [];
  for (const mode of modes) rows.push(await runOne(mode, log));
  return rows;
}

/** The Markdown table of the rows. */
export function formatBurstTable(rows: BurstRow[]): string {
  const lines = [
    "| mode | bursts completed | OOM kills | pool cgroup failcnt | guests' failcnt | largest sum of limits | note |",
    '|---|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows)
    lines.push(
      `| ${r.mode} | ${r.completed}/${r.bursts} | ${r.oomKills} | ${r.poolFailcnt} | ${r.guestFailcnt} | ${r.maxLimitSumMib} MiB of ${POOL_MIB} | ${r.note} |`,
    );
  return lines.join('\n');
}

// Run alone: npx tsx packages/host/bench/handoff-burst.bench.ts
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await runBurstBench({ log: (l) => process.stderr.write(`  ${l}\n`) });
  console.log(formatBurstTable(rows));
}
