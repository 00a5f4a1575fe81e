// Load benchmark of the control plane: many simulated guests in worker
// threads of this process (load-guests.ts) speak the real protocol to a host
// in a child process. Guests send stats every second; every few seconds the
// driver sets a new target for every VM through the admin API. We measure the host's CPU and RSS from
// /proc and the delivery latency of targets (PUT sent → frame received).
// A simulated balloon is fine here: this measures the host, not the kernel.
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { loadGuestName, type GuestWorkerData, type GuestWorkerMessage } from './load-guests.js';

const GUEST_THREAD = new URL('./load-guests-thread.mjs', import.meta.url);
const nowAbsMs = (): number => performance.timeOrigin + performance.now();

/** Settings of one load run. */
export interface LoadOptions {
  guests: number;
  memoryMib: number;
  rounds: number;
  roundIntervalMs: number;
  statsIntervalMs: number;
  httpConcurrency: number;
  /** Worker threads holding the simulated guests (the main thread sends the PUTs). */
  driverThreads: number;
  /** Which hosts to run: both (the benchmark), or one of them alone (profiling). */
  hosts: 'both' | 'ours' | 'null';
  /** Extra node flags for the host child (profiling: --cpu-prof, --perf-basic-prof). */
  hostNodeArgs: string[];
}

/** What one load run measured. */
export interface LoadResult {
  label: string;
  guests: number;
  targetsSent: number;
  targetsDelivered: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  roundP99Ms: number;
  hostCpuPercent: number;
  /** The part of hostCpuPercent spent in the kernel (system time: sockets, files). */
  hostSystemCpuPercent: number;
  hostRssMib: number;
  /** The machine's 1-minute load average at the end of the run (/proc/loadavg): on a shared machine, what the figures were measured under. */
  loadAverage: number;
}

const CLK_TCK = 100; // Linux USER_HZ on every architecture Node supports.

function cpuTicks(pid: number): { userTicks: number; systemTicks: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { userTicks: Number(fields[11]), systemTicks: Number(fields[12]) }; // utime, stime
}

function rssMib(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m?.[1] ? Number(m[1]) / 1024 : Number.NaN;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * The hosts run the built JavaScript (`npm run bench` builds first), as users
 * run it: the repository's scripts load TypeScript through tsx (the
 * `@memballoon/source` condition), whose transform adds work of its own
 * (esbuild's keepNames wraps every named closure in a `__name` call, once per
 * call of the function that makes it). The null host is a script, still
 * loaded by tsx; the protocol package it imports is the built one too.
 */
function builtEnv(): NodeJS.ProcessEnv {
  const nodeOptions = (process.env.NODE_OPTIONS ?? '')
    .split(/\s+/)
    .filter((o) => o !== '' && o !== '--conditions=@memballoon/source')
    .join(' ');
  return { ...process.env, NODE_OPTIONS: nodeOptions };
}

/**
 * Starts a host with its stdout in a file, as a service's logs would go to
 * journald: a pipe that this busy driver drains late would block the host's
 * synchronous log writes and show up as the host's latency.
 */
async function startProcess(cmd: string, args: string[], logFile: string): Promise<{ child: ChildProcess; url: string }> {
  const fd = openSync(logFile, 'w');
  const child = spawn(cmd, args, { stdio: ['ignore', fd, 'inherit'], env: builtEnv() });
  closeSync(fd);
  const deadlineMs = Date.now() + 30_000;
  for (;;) {
    const m = /(https?:\/\/127\.0\.0\.1:\d+)/.exec(readFileSync(logFile, 'utf8'));
    if (m?.[1]) return { child, url: m[1] };
    if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
    if (Date.now() > deadlineMs) throw new Error(`${args.join(' ')}: no URL within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface GuestThreads {
  names: string[];
  stop(): Promise<void>;
}

/**
 * Starts the simulated guests in `threads` worker threads (load-guests.ts),
 * resolves once every guest is welcomed; `onTargets` hears of each
 * SetBalloonTarget's arrival (absolute ms, see load-guests.ts).
 */
async function startGuestThreads(url: string, opts: LoadOptions, onTargets: (names: string[], atMs: number[]) => void): Promise<GuestThreads> {
  const threads = Math.max(1, Math.min(opts.driverThreads, opts.guests));
  const workers: Worker[] = [];
  const ready: Array<Promise<void>> = [];
  for (let t = 0; t < threads; t++) {
    const first = Math.floor((t * opts.guests) / threads);
    const count = Math.floor(((t + 1) * opts.guests) / threads) - first;
    const data: GuestWorkerData = { url, first, count, memoryMib: opts.memoryMib, statsIntervalMs: opts.statsIntervalMs };
    const w = new Worker(GUEST_THREAD, { workerData: data });
    workers.push(w);
    ready.push(
      new Promise<void>((resolve, reject) => {
        w.on('message', (m: GuestWorkerMessage) => {
          if (m.type === 'ready') resolve();
          else if (m.type === 'targets') onTargets(m.names, m.atMs);
          else if (m.type === 'failed') reject(new Error(`guest thread ${t}: ${m.message}`));
        });
        w.on('error', reject);
      }),
    );
  }
  try {
    await Promise.all(ready);
  } catch (err) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw err;
  }
  return {
    names: Array.from({ length: opts.guests }, (_, i) => loadGuestName(i)),
    stop: async () => {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              w.on('message', (m: GuestWorkerMessage) => m.type === 'stopped' && resolve());
              w.once('exit', () => resolve());
              w.postMessage({ type: 'stop' });
            }),
        ),
      );
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

/**
 * PUT with node:http over kept-alive sockets: fetch costs the driver several
 * times more CPU per request, and the driver shares two cores with the host,
 * so its own cost would show up as the host's latency.
 */
function put(agent: Agent, url: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'PUT', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function runAgainst(label: string, url: string, pid: number, opts: LoadOptions, headers: Record<string, string>): Promise<LoadResult> {
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let roundPending = 0;
  let roundResolve: (() => void) | null = null;
  const guests = await startGuestThreads(url, opts, (names, atMs) => {
    for (let i = 0; i < names.length; i++) {
      const t0 = sentAt.get(names[i]!);
      if (t0 === undefined) continue;
      sentAt.delete(names[i]!);
      latencies.push(atMs[i]! - t0);
      roundPending -= 1;
      if (roundPending === 0) roundResolve?.();
    }
  });

  const httpAgent = new Agent({ keepAlive: true, maxSockets: opts.httpConcurrency });
  const ticks0 = cpuTicks(pid);
  const t0 = performance.now();
  const roundTimes: number[] = [];
  let sent = 0;
  for (let round = 0; round < opts.rounds; round++) {
    const roundStart = performance.now();
    const targetMib = round % 2 === 0 ? Math.floor(opts.memoryMib / 4) : Math.floor(opts.memoryMib / 8);
    roundPending = guests.names.length;
    const done = new Promise<void>((resolve) => (roundResolve = resolve));
    let next = 0;
    const body = JSON.stringify({ targetMib });
    const worker = async () => {
      while (next < guests.names.length) {
        const name = guests.names[next++]!;
        sentAt.set(name, nowAbsMs());
        const status = await put(httpAgent, `${url}/api/v1/vms/${encodeURIComponent(name)}/balloon`, body, headers);
        if (status !== 202 && status !== 200) throw new Error(`${label}: PUT ${name} answered ${status}`);
        sent += 1;
      }
    };
    await Promise.all(Array.from({ length: opts.httpConcurrency }, worker));
    // A generous deadline for the last frames of a round; what is missing then counts as not delivered.
    await Promise.race([done, new Promise((r) => setTimeout(r, Math.max(10_000, guests.names.length * 4)))]);
    roundTimes.push(performance.now() - roundStart);
    const rest = opts.roundIntervalMs - (performance.now() - roundStart);
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
  }
  const elapsedS = (performance.now() - t0) / 1000;
  const ticks1 = cpuTicks(pid);
  const percentOf = (ticks: number): number => (ticks / CLK_TCK / elapsedS) * 100;
  const cpu = percentOf(ticks1.userTicks + ticks1.systemTicks - ticks0.userTicks - ticks0.systemTicks);
  const systemCpu = percentOf(ticks1.systemTicks - ticks0.systemTicks);
  const rss = rssMib(pid);
  httpAgent.destroy();
  await guests.stop();
  latencies.sort((a, b) => a - b);
  roundTimes.sort((a, b) => a - b);
  return {
    label,
    guests: guests.names.length,
    targetsSent: sent,
    targetsDelivered: latencies.length,
    latencyP50Ms: percentile(latencies, 50),
    latencyP99Ms: percentile(latencies, 99),
    roundP99Ms: percentile(roundTimes, 99),
    hostCpuPercent: cpu,
    hostSystemCpuPercent: systemCpu,
    hostRssMib: rss,
    loadAverage: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
  };
}

/** Options for the host under test: how to start it and how to authenticate. */
export interface HostUnderTest {
  args: (dataDir: string) => string[];
  headers: (dataDir: string) => Record<string, string>;
}

/** Runs the load benchmark against our host and the null host; returns both results. */
export async function runLoadBench(partial: Partial<LoadOptions> = {}, host?: HostUnderTest): Promise<LoadResult[]> {
  const opts: LoadOptions = {
    guests: 1000,
    memoryMib: 64,
    rounds: 8,
    roundIntervalMs: 3000,
    statsIntervalMs: 1000,
    httpConcurrency: 32,
    driverThreads: 0,
    hosts: 'both',
    hostNodeArgs: [],
    ...partial,
  };
  // One guest thread per 2,500 guests: the main thread sends the PUTs.
  if (opts.driverThreads <= 0) opts.driverThreads = Math.max(1, Math.ceil(opts.guests / 2500));
  const root = new URL('../..', import.meta.url).pathname;
  const results: LoadResult[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-load-'));
  const ours = host ?? {
    args: (dir: string) => [
      join(root, 'packages/host/bin/balloon-host.mjs'),
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      dir,
      '--pool-mib',
      String(opts.guests * opts.memoryMib * 2),
      '--auto-register',
    ],
    // The admin token the host made in its data directory at start (mode 0600), as balloonctl reads it.
    headers: (dir: string) => ({ authorization: `Bearer ${readFileSync(join(dir, 'admin.token'), 'utf8').trim()}` }),
  };
  try {
    const runs: Array<[string, string[]]> = [
      ['null host (reference)', ['--import', 'tsx', join(root, 'scripts/bench/null-host.ts')]],
      ['memballoon host', ours.args(dataDir)],
    ];
    for (const [label, args] of runs) {
      if (opts.hosts !== 'both' && label.startsWith(opts.hosts === 'ours' ? 'null' : 'memballoon')) continue;
      const { child, url } = await startProcess(process.execPath, [...opts.hostNodeArgs, ...args], join(dataDir, `${label.split(' ')[0]}.log`));
      try {
        const headers = label.startsWith('memballoon') ? ours.headers(dataDir) : {};
        results.push(await runAgainst(label, url, child.pid!, opts, headers));
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  return results;
}
