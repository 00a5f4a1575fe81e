// Hand-off benchmark (issue 14): how long from a balloon settling (at its
// target) to its memory being free on the host (the agent has released all
// of it under the lowered limit: the limit is memory − B and the guest's
// cgroup usage is back where it was before the target), for 256 MiB and
// 1 GiB, on the real kernel. The host hands off while the balloon inflates,
// so the table also says how much was handed off at the settle, and the
// whole path from the target. A host runs in this process; a
// real balloon-agent runs in a v1 memory cgroup made for the run (removed
// after). Needs root and cgroup v1's memory controller; says why otherwise.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { KernelMemoryCgroup, kernelCgroupFs } from '../src/cgroup/index.js';
import { startHost, type HostHandle } from '../src/server.js';

const MIB = 1024 * 1024;
const V1 = '/sys/fs/cgroup/memory';
const AGENT = fileURLToPath(new URL('../../guest-agent/bin/balloon-agent.mjs', import.meta.url));

/** When the host hands a balloon off. */
export type HandOffOrder = 'while inflating' | 'after the settle';

/** One row: a balloon size, an order, and what its hand-offs took. */
export interface HandOffBenchRow {
  balloonMib: number;
  /** 'while inflating' (ours: the host hands off what the balloon has pinned so far) or 'after the settle' (the reference: issue 14's order). */
  order: HandOffOrder;
  runs: number;
  /** Balloon settled → handed off (memory free in the kernel), ms. */
  p50Ms: number;
  maxMs: number;
  /** Target sent → handed off (the whole path: inflate and hand-off), ms, median. */
  targetToFreeP50Ms: number;
  /** MiB already handed off when the balloon settled (hand-off while inflating), median. */
  handedAtSettleMib: number;
  /** The guest cgroup's usage after the hand-off minus before the target, MiB (median; ~0: the balloon costs the guest nothing). */
  usageGrowthMib: number;
  note: string;
}

/** Why the benchmark cannot run here ('' when it can). */
export function handOffBenchSkipReason(): string {
  if (process.getuid?.() !== 0) return 'needs root to make memory cgroups';
  if (!existsSync(join(V1, 'memory.usage_in_bytes'))) return `no cgroup v1 memory controller at ${V1}`;
  return '';
}

const readMib = (dir: string, file: string): number => Number(readFileSync(join(dir, file), 'utf8')) / MIB;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)]!;
}

/** Resolves when `probe` holds (checked on every change of the service), or rejects after timeoutMs. */
function when(host: HostHandle, probe: () => boolean, what: string, timeoutMs = 60_000): Promise<number> {
  return new Promise((resolve, reject) => {
    if (probe()) return resolve(performance.now());
    const timer = setTimeout(() => {
      off();
      reject(new Error(`${what} did not happen within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = host.service.subscribe(() => {
      if (!probe()) return;
      const t = performance.now();
      clearTimeout(timer);
      off();
      resolve(t);
    });
  });
}

/** Runs the hand-off timings for each balloon size. */
export async function runHandOffBench(
  options: {
    sizesMib?: number[];
    runs?: number;
    log?: (line: string) => void;
    /** The host's logger (default silent); at debug it times every hand-off step. */
    logger?: Logger;
    /** The agent's --log-level (default warn); at debug it times every release. */
    agentLogLevel?: string;
    /** The VM's memory beyond the balloon, in MiB (default 512; the agent itself takes ~60). */
    headroomMib?: number;
  } = {},
): Promise<HandOffBenchRow[]> {
  const sizes = options.sizesMib ?? [256, 1024];
  const runs = options.runs ?? 7;
  const log = options.log ?? (() => {});
  const skip = handOffBenchSkipReason();
  if (skip)
    return sizes.map((b) => ({
      balloonMib: b,
      order: 'while inflating',
      runs: 0,
      p50Ms: Number.NaN,
      maxMs: Number.NaN,
      targetToFreeP50Ms: Number.NaN,
      handedAtSettleMib: Number.NaN,
      usageGrowthMib: Number.NaN,
      note: skip,
    }));
  const rows: HandOffBenchRow[] = [];
  // The reference first, then ours, for each size: the same machine, minutes apart.
  const plan = sizes.flatMap((balloonMib) => (['after the settle', 'while inflating'] as const).map((order) => ({ balloonMib, order })));
  for (const { balloonMib, order } of plan) {
    const memoryMib = balloonMib + (options.headroomMib ?? 512);
    const parent = join(V1, `memballoon-bench-handoff-${process.pid}-${Date.now()}`);
    const dir = join(parent, 'bench');
    const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-bench-'));
    mkdirSync(parent);
    mkdirSync(dir);
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(memoryMib * MIB));
    const cgroup = new KernelMemoryCgroup(dir, 1, kernelCgroupFs);
    const host = await startHost({
      listenPort: 0,
      dataDir,
      poolSizeMib: memoryMib,
      policyIntervalMs: 0,
      dashboard: false,
      fusion: false,
      cgroupOf: (n) => (n === 'bench' ? cgroup : null),
      handOffWhileInflating: order === 'while inflating',
      ...(options.logger ? { logger: options.logger } : {}),
    }).catch((err: unknown) => {
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    });
    let agent: ChildProcess | null = null;
    try {
      const { token } = host.service.createVm({ name: 'bench', memoryMib });
      agent = spawn(
        '/bin/sh',
        [
          '-c',
          `echo $$ > ${dir}/cgroup.procs && exec "$0" "$@"`,
          process.execPath,
          AGENT,
          '--host',
          host.url,
          '--name',
          'bench',
          '--domain',
          'cgroup',
          '--log-level',
          options.agentLogLevel ?? 'warn',
        ],
        {
          stdio: ['ignore', 'ignore', 'inherit'],
          env: { ...process.env, MEMBALLOON_TOKEN: token },
        },
      );
      // Welcomed: its first statistics have come (a target sent before the Welcome is refused by the agent).
      await when(host, () => host.service.isRunning('bench') && host.service.vmView('bench').stats !== undefined, 'the agent to connect');
      const times: number[] = [];
      const wholePath: number[] = [];
      const handedAtSettle: number[] = [];
      const growth: number[] = [];
      const balloon = () => host.service.vmView('bench').balloon;
      for (let i = 0; i < runs; i++) {
        let handedMib = 0;
        // Settled: the status that says the balloon is pinned at its target
        // (actual = pinned + handed off; part of it may be handed off already:
        // the host hands off while the balloon inflates).
        const settled = when(
          host,
          () => {
            const b = balloon();
            if (!(b && b.actualMib === balloonMib && b.state === 'steady')) return false;
            handedMib = b.handedOffMib ?? 0;
            return true;
          },
          'the balloon to settle',
        );
        const handed = when(host, () => balloon()?.handedOffMib === balloonMib, 'the hand-off');
        const usageBefore = readMib(dir, 'memory.usage_in_bytes');
        const tTarget = performance.now();
        await host.service.setBalloon('bench', balloonMib);
        const t0 = await settled;
        const t1 = await handed;
        const usageFree = readMib(dir, 'memory.usage_in_bytes');
        const limitMib = readMib(dir, 'memory.limit_in_bytes');
        if (limitMib !== memoryMib - balloonMib) throw new Error(`after the hand-off the limit is ${limitMib} MiB, not ${memoryMib - balloonMib}`);
        times.push(t1 - t0);
        wholePath.push(t1 - tTarget);
        handedAtSettle.push(handedMib);
        growth.push(usageFree - usageBefore);
        await host.service.handOffsIdle();
        await host.service.setBalloon('bench', 0);
        await when(host, () => balloon()?.actualMib === 0 && readMib(dir, 'memory.limit_in_bytes') === memoryMib, 'the deflate');
        await host.service.handOffsIdle();
        log(
          `hand-off ${balloonMib} MiB ${order} run ${i + 1}: settled -> free ${(t1 - t0).toFixed(1)} ms (${handedMib} MiB handed off at the settle), ` +
            `target -> free ${(t1 - tTarget).toFixed(1)} ms, cgroup usage ${usageBefore.toFixed(0)} -> ${usageFree.toFixed(0)} MiB, limit ${limitMib} MiB`,
        );
      }
      rows.push({
        balloonMib,
        order,
        runs,
        p50Ms: median(times),
        maxMs: Math.max(...times),
        targetToFreeP50Ms: median(wholePath),
        handedAtSettleMib: median(handedAtSettle),
        usageGrowthMib: median(growth),
        note: '',
      });
    } finally {
      if (agent && agent.exitCode === null && agent.signalCode === null) {
        const exited = new Promise((r) => agent!.once('exit', r));
        agent.kill('SIGKILL');
        await exited;
      }
      try {
        await host.close();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
      for (const d of [dir, parent]) {
        for (let tries = 0; ; tries++) {
          try {
            rmdirSync(d);
            break;
          } catch (err) {
            // A throw here (in finally) would hide the run's own error: say it and go on.
            if (tries > 200) {
              process.stderr.write(`bench: could not remove ${d}: ${(err as Error).message}\n`);
              break;
            }
            await new Promise((r) => setTimeout(r, 25));
          }
        }
      }
    }
  }
  return rows;
}

/** The Markdown table of the rows: each order, and ours against the reference of the same size. */
export function formatHandOffTable(rows: HandOffBenchRow[]): string {
  const lines = [
    '| balloon | hand-off | runs | settled → free on the host, p50 | max | handed off at the settle | target → free, p50 | cgroup usage after − before | settled → free: ours / reference | target → free: ours / reference | goal | note |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  const ms = (v: number) => (Number.isNaN(v) ? '—' : `${v.toFixed(1)} ms`);
  const mib = (v: number) => (Number.isNaN(v) ? '—' : `${v.toFixed(0)} MiB`);
  const ratio = (a: number, b: number | undefined) => (b === undefined || Number.isNaN(a) || Number.isNaN(b) || b === 0 ? '' : `${(a / b).toFixed(2)}`);
  for (const r of rows) {
    const ref = r.order === 'while inflating' ? rows.find((o) => o.balloonMib === r.balloonMib && o.order === 'after the settle') : undefined;
    lines.push(
      `| ${r.balloonMib} MiB | ${r.order}${ref ? '' : ' (reference)'} | ${r.runs} | ${ms(r.p50Ms)} | ${ms(r.maxMs)} | ${mib(r.handedAtSettleMib)} | ${ms(r.targetToFreeP50Ms)} | ${mib(r.usageGrowthMib)} | ` +
        `${ratio(r.p50Ms, ref?.p50Ms)} | ${ratio(r.targetToFreeP50Ms, ref?.targetToFreeP50Ms)} | ${r.balloonMib >= 1024 && ref ? 'p50 < 50 ms' : ''} | ${r.note} |`,
    );
  }
  return lines.join('\n');
}

// Run alone: npx tsx packages/host/bench/handoff.bench.ts
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await runHandOffBench({ log: (l) => process.stderr.write(`  ${l}\n`) });
  console.log(formatHandOffTable(rows));
}
