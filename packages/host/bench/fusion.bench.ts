// Page fusion benchmark: for the same guests and regions, how long until the
// host KNOWS what is sharable (hints: hash, frame, table) against how long
// until KSM has MERGED it, at the kernel's default scan rate and at the rates
// the host's controller sets. Run: npx tsx packages/host/bench/fusion.bench.ts
// (root, Linux with KSM, for the KSM rows; the hints row runs anywhere).
//
// Guests: GUESTS processes, each with COMMON_MIB of the same content and
// PRIVATE_MIB of its own, all advised MADV_MERGEABLE. "Merged" means every
// guest's /proc/PID/ksm_merging_pages has reached the common pages. Each KSM
// row also reports what ksmd's scan cost: its CPU time (utime + stime of
// /proc/<ksmd>/stat) from the start of the row until merged.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { bodies, decodeFrame, encodeFrame } from '@memballoon/protocol';
import { allocateAligned, createSharedRegionRegistry, ksmMergingPages } from '@memballoon/guest-agent';
import { decideKsm, DEFAULT_KSM_POLICY, HostFusion, KsmController, KsmSysfs, MOM_KSM_POLICY, probeKsm, type KsmSettings } from '../src/fusion/index.js';
import { fillCommon } from './fusion-content.js';

/** One row of the result table. */
export interface FusionBenchRow {
  /** What was measured. */
  method: string;
  /** KSM's pages_to_scan and sleep_millisecs during the run ('-' for hints; a range while the controller ramps). */
  pagesToScan: string;
  sleepMillisecs: string;
  /** Time until the host knew (hints) or the kernel had merged (KSM) the common pages, in ms. */
  timeMs: number;
  /** MiB sharable (hints) or merged (KSM) summed over the guests at that time. */
  mib: number;
  /** ksmd's CPU time during the row, in ms (NaN for hints, or where ksmd is not known). */
  ksmdCpuMs: number;
  /** Why a row could not be measured ('' when it was). */
  note: string;
}

/** Benchmark sizes. */
export interface FusionBenchOptions {
  guests?: number;
  commonMib?: number;
  privateMib?: number;
  /** Give up on a KSM row after this long, in ms. */
  deadlineMs?: number;
}

const GUEST = fileURLToPath(new URL('./fusion-guest.ts', import.meta.url));
const PAGE = 4096;

/** Runs the benchmark and returns its rows. */
export async function runFusionBench(opts: FusionBenchOptions = {}): Promise<FusionBenchRow[]> {
  const guests = opts.guests ?? 3;
  const commonMib = opts.commonMib ?? 32;
  const privateMib = opts.privateMib ?? 4;
  const deadlineMs = opts.deadlineMs ?? 120_000;
  const rows: FusionBenchRow[] = [await hintsRow(guests, commonMib, privateMib)];
  const probe = probeKsm();
  if (!probe.ok || !existsSync('/proc/self/ksm_merging_pages')) {
    rows.push({
      method: 'KSM',
      pagesToScan: '-',
      sleepMillisecs: '-',
      timeMs: Number.NaN,
      mib: 0,
      ksmdCpuMs: Number.NaN,
      note: probe.ok ? 'no /proc/PID/ksm_merging_pages' : probe.detail,
    });
    return rows;
  }
  const sysfs = new KsmSysfs();
  const found = sysfs.read();
  try {
    // The kernel's defaults (mm/ksm.c): 100 pages every 20 ms.
    rows.push(await ksmRow('KSM, kernel default rate', guests, commonMib, privateMib, deadlineMs, sysfs, { run: true, pagesToScan: 100, sleepMillisecs: 20 }));
    rows.push(await ksmRow("KSM, controller's top rate set at once", guests, commonMib, privateMib, deadlineMs, sysfs, null));
    rows.push(
      await ksmRow(
        "KSM, MOM's ramp ticking every 1 s from the default (the controller before hints steered it)",
        guests,
        commonMib,
        privateMib,
        deadlineMs,
        sysfs,
        'mom-ramp',
      ),
    );
    rows.push(
      await ksmRow(
        'KSM steered by the hints: a burst when they arrive (no sleep, ksmd at nice 0)',
        guests,
        commonMib,
        privateMib,
        deadlineMs,
        sysfs,
        'controller',
      ),
    );
  } finally {
    sysfs.restore();
    // restore() is a no-op if this process never took the lock: put back by hand then.
    const now = sysfs.read();
    if (now.run !== found.run || now.pagesToScan !== found.pagesToScan || now.sleepMillisecs !== found.sleepMillisecs) {
      const k = new KsmSysfs();
      k.apply({ run: found.run, pagesToScan: found.pagesToScan, sleepMillisecs: found.sleepMillisecs });
      k.restore();
    }
  }
  return rows;
}

// Hints: every guest hashes its regions and sends the frames; the host
// decodes them into the table. Done one guest after another in this process
// (real guests hash in parallel, so this is an upper bound), with the real
// encode and decode of the wire frames.
async function hintsRow(guests: number, commonMib: number, privateMib: number): Promise<FusionBenchRow> {
  const seed = 12345;
  const contents = Array.from({ length: guests }, () => {
    const common = allocateAligned(commonMib * 1024 * 1024);
    fillCommon(common.bytes, seed);
    const priv = allocateAligned(privateMib * 1024 * 1024);
    for (let at = 0; at < priv.bytes.byteLength; at += 65536) randomFillSync(priv.bytes.subarray(at, at + 65536));
    return { common, priv };
  });
  const registries = await Promise.all(contents.map(() => createSharedRegionRegistry({ advisor: { advise: () => ({ ok: true }) } })));
  const fusion = new HostFusion({ ksm: null });
  const t0 = performance.now();
  for (let g = 0; g < guests; g++) {
    const reg = registries[g]!;
    reg.register({ name: 'common', version: '1', data: contents[g]!.common.bytes });
    reg.register({ name: `private-${g}`, version: '1', data: contents[g]!.priv.bytes });
    let seq = 1;
    for (const f of reg.frames()) {
      const frame = decodeFrame(encodeFrame(seq++, bodies.sharedRegion(f)));
      if (frame.body.case === 'sharedRegion') fusion.hooks.sharedRegion(`guest-${g}`, frame.body.value);
    }
  }
  const timeMs = performance.now() - t0;
  const mib = fusion.hostSharing().sharableMib;
  fusion.close();
  return { method: `hints (${guests} guests hash, frame, table)`, pagesToScan: '-', sleepMillisecs: '-', timeMs, mib, ksmdCpuMs: Number.NaN, note: '' };
}

async function startGuests(guests: number, commonMib: number, privateMib: number): Promise<Array<{ proc: ChildProcess; pid: number }>> {
  // A fresh seed per row, so nothing merged in an earlier row helps this one.
  const seed = (Math.random() * 2 ** 32) >>> 0;
  return Promise.all(
    Array.from({ length: guests }, () => {
      const proc = spawn(process.execPath, ['--import', 'tsx', GUEST, String(seed), String(commonMib), String(privateMib)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      return new Promise<{ proc: ChildProcess; pid: number }>((resolve, reject) => {
        proc.once('exit', (code) => reject(new Error(`a guest exited with ${code}`)));
        createInterface({ input: proc.stdout! }).once('line', (line) => {
          const msg = JSON.parse(line) as { pid: number; advice: string };
          if (msg.advice !== 'ok') reject(new Error(`madvise failed: ${msg.advice}`));
          else resolve({ proc, pid: msg.pid });
        });
      });
    }),
  );
}

async function ksmRow(
  method: string,
  guests: number,
  commonMib: number,
  privateMib: number,
  deadlineMs: number,
  sysfs: KsmSysfs,
  how: KsmSettings | null | 'controller' | 'mom-ramp',
): Promise<FusionBenchRow> {
  const commonPages = (commonMib * 1024 * 1024) / PAGE;
  // KSM off while the guests start, so the clock starts with all of them ready.
  sysfs.apply({ run: false, pagesToScan: 100, sleepMillisecs: 20 });
  const started = await startGuests(guests, commonMib, privateMib);
  const merged = (): number[] => started.map((g) => ksmMergingPages(g.pid));
  // The controller as the host runs it: ticked when the hints arrive (the
  // host's kick) and every second after; 'mom-ramp' without the burst.
  const controller =
    how === 'controller'
      ? new KsmController({ sysfs })
      : how === 'mom-ramp'
        ? new KsmController({ sysfs, policy: { ...DEFAULT_KSM_POLICY, burstMaxFullScans: 0 } })
        : null;
  const seenPages = new Set<number>();
  const seenSleep = new Set<number>();
  const cpu0 = ksmdCpuMs(sysfs);
  const row = (timeMs: number, m: number[], note: string): FusionBenchRow => ({
    method,
    pagesToScan: range(seenPages),
    sleepMillisecs: range(seenSleep),
    timeMs,
    mib: m.reduce((s, n) => s + n, 0) / 256,
    ksmdCpuMs: ksmdCpuMs(sysfs) - cpu0,
    note,
  });
  try {
    const t0 = performance.now();
    let nextTickMs = 0;
    if (!controller) {
      sysfs.apply(how === null || typeof how === 'string' ? topRate() : how);
    }
    for (;;) {
      const elapsed = performance.now() - t0;
      if (controller && elapsed >= nextTickMs) {
        const m = merged();
        const sharable = guests * commonMib;
        const unmerged = m.reduce((s, n) => s + Math.max(0, commonPages - n), 0) / 256;
        controller.tick({ fusionVmsRunning: guests, sharableMib: sharable, unmergedMib: unmerged });
        nextTickMs += 1000;
      }
      const k = sysfs.read();
      seenPages.add(k.pagesToScan);
      seenSleep.add(k.sleepMillisecs);
      const m = merged();
      if (m.every((n) => n >= commonPages)) return row(performance.now() - t0, m, '');
      if (elapsed > deadlineMs) return row(Number.NaN, m, `not merged within ${deadlineMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    for (const g of started) g.proc.kill('SIGKILL');
    await Promise.all(started.map((g) => new Promise((r) => (g.proc.exitCode !== null ? r(null) : g.proc.once('exit', r)))));
  }
}

// What the controller reaches while hints stay unmerged: MOM's npagesMax,
// and MOM's sleep for this host's memory (the policy, asked directly).
function topRate(): KsmSettings {
  const d = decideKsm({
    fusionVmsRunning: 1,
    sharableMib: 1,
    unmergedMib: 1,
    pagesShared: 0,
    pagesSharing: 0,
    pagesToScan: MOM_KSM_POLICY.npagesMax,
    memTotalMib: Math.round(totalmem() / (1024 * 1024)),
  });
  if (!d.drive) throw new Error('the policy drives KSM while VMs run');
  return d.settings;
}

function ksmdCpuMs(sysfs: KsmSysfs): number {
  try {
    return sysfs.ksmd?.cpuMs() ?? Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function range(values: Set<number>): string {
  const v = [...values].sort((a, b) => a - b);
  return v.length === 1 ? String(v[0]) : `${v[0]}…${v.at(-1)}`;
}

/** ksmd's CPU of a row: ms, and the share of one core over the row's time. */
export function formatKsmdCpu(r: FusionBenchRow): string {
  if (Number.isNaN(r.ksmdCpuMs)) return '—';
  return Number.isNaN(r.timeMs) ? `${r.ksmdCpuMs.toFixed(0)} ms` : `${r.ksmdCpuMs.toFixed(0)} ms (${((100 * r.ksmdCpuMs) / r.timeMs).toFixed(0)} % of a core)`;
}

/** Prints the rows as a Markdown table. */
export function formatFusionBench(rows: readonly FusionBenchRow[]): string {
  const lines = [
    '| method | pages_to_scan | sleep_millisecs | time to sharable/merged | MiB | ksmd CPU | note |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of rows) {
    const t = Number.isNaN(r.timeMs) ? '-' : r.timeMs < 1000 ? `${r.timeMs.toFixed(0)} ms` : `${(r.timeMs / 1000).toFixed(2)} s`;
    lines.push(`| ${r.method} | ${r.pagesToScan} | ${r.sleepMillisecs} | ${t} | ${r.mib.toFixed(1)} | ${formatKsmdCpu(r)} | ${r.note} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await runFusionBench();
  console.log(`page fusion benchmark, ${new Date().toISOString().slice(0, 10)}`);
  console.log(formatFusionBench(rows));
}
