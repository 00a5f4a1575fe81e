// Load benchmark of the control plane: many simulated guests in this one
// process speak the real protocol to a host in a child process. Guests send
// stats every second; every few seconds the driver sets a new target for
// every VM through the admin API. We measure the host's CPU and RSS from
// /proc and the delivery latency of targets (PUT sent → frame received).
// A simulated balloon is fine here: this measures the host, not the kernel.
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { bodies, decodeFrame, FrameEncoder } from '@memballoon/protocol';

/** Settings of one load run. */
export interface LoadOptions {
  guests: number;
  memoryMib: number;
  rounds: number;
  roundIntervalMs: number;
  statsIntervalMs: number;
  httpConcurrency: number;
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
  hostRssMib: number;
}

const CLK_TCK = 100; // Linux USER_HZ on every architecture Node supports.

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
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
 * Starts a host with its stdout in a file, as a service's logs would go to
 * journald: a pipe that this busy driver drains late would block the host's
 * synchronous log writes and show up as the host's latency.
 */
async function startProcess(cmd: string, args: string[], logFile: string): Promise<{ child: ChildProcess; url: string }> {
  const fd = openSync(logFile, 'w');
  const child = spawn(cmd, args, { stdio: ['ignore', fd, 'inherit'] });
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

interface Guest {
  name: string;
  ws: WebSocket;
  enc: FrameEncoder;
  welcomed: boolean;
}

async function connectGuests(url: string, opts: LoadOptions, onTarget: (name: string, targetMib: number) => void): Promise<Guest[]> {
  const wsUrl = `${url.replace(/^http/, 'ws')}/v1/guest`;
  const guests: Guest[] = [];
  const connectOne = (i: number) =>
    new Promise<Guest>((resolve, reject) => {
      const name = `load-${String(i).padStart(4, '0')}`;
      const ws = new WebSocket(wsUrl, 'memballoon.v1');
      const guest: Guest = { name, ws, enc: new FrameEncoder(), welcomed: false };
      const status = (targetMib: number, generation: number) =>
        ws.send(guest.enc.encode(bodies.balloonStatus({ generation, targetMib, actualMib: targetMib, lockedMib: targetMib, state: 'steady', lock: 'locked' })));
      ws.on('open', () => {
        ws.send(
          guest.enc.encode(
            bodies.hello({
              vmName: name,
              credential: '',
              agentVersion: 'load-driver',
              facts: {
                pid: process.pid,
                totalMemoryMib: opts.memoryMib,
                pageSizeBytes: 4096,
                chunkSizeMib: 1,
                capabilities: { pin: true, pageFusion: false, deflateOnPressure: true },
                domain: 'process',
                hostname: 'load',
              },
              balloon: { actualMib: 0, lockedMib: 0, generation: 0, targetMib: 0 },
            }),
          ),
        );
      });
      ws.on('message', (data: Buffer) => {
        const frame = decodeFrame(data);
        if (frame.body.case === 'welcome') {
          guest.welcomed = true;
          status(frame.body.value.targetMib, frame.body.value.generation);
          resolve(guest);
        } else if (frame.body.case === 'setBalloonTarget') {
          onTarget(name, frame.body.value.targetMib);
          status(frame.body.value.targetMib, frame.body.value.generation);
        } else if (frame.body.case === 'error') {
          reject(new Error(`${name}: ${frame.body.value.code}: ${frame.body.value.message}`));
        }
      });
      ws.on('error', reject);
    });
  for (let i = 0; i < opts.guests; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(opts.guests, i + 50); j++) batch.push(connectOne(j));
    guests.push(...(await Promise.all(batch)));
  }
  return guests;
}

/**
 * PUT with node:http over kept-alive sockets: fetch costs the driver several
 * times more CPU per request, and the driver shares two cores with the host,
 * so its own cost would show up as the host's latency.
 */
function put(agent: Agent, url: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function runAgainst(label: string, url: string, pid: number, opts: LoadOptions, headers: Record<string, string>): Promise<LoadResult> {
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let roundPending = 0;
  let roundResolve: (() => void) | null = null;
  const guests = await connectGuests(url, opts, (name) => {
    const t0 = sentAt.get(name);
    if (t0 === undefined) return;
    sentAt.delete(name);
    latencies.push(performance.now() - t0);
    roundPending -= 1;
    if (roundPending === 0) roundResolve?.();
  });

  // Stats every statsIntervalMs, spread over the interval in ten slices.
  const memBytes = opts.memoryMib * 1024 * 1024;
  let slice = 0;
  const statsTimer = setInterval(() => {
    for (let i = slice; i < guests.length; i += 10) {
      const g = guests[i]!;
      g.ws.send(g.enc.encode(bodies.memoryStats({ totalBytes: memBytes, freeBytes: memBytes / 2, availableBytes: memBytes / 2, domain: 'process' })));
    }
    slice = (slice + 1) % 10;
  }, opts.statsIntervalMs / 10);

  const httpAgent = new Agent({ keepAlive: true, maxSockets: opts.httpConcurrency });
  const ticks0 = cpuTicks(pid);
  const t0 = performance.now();
  const roundTimes: number[] = [];
  let sent = 0;
  for (let round = 0; round < opts.rounds; round++) {
    const roundStart = performance.now();
    const targetMib = round % 2 === 0 ? Math.floor(opts.memoryMib / 4) : Math.floor(opts.memoryMib / 8);
    roundPending = guests.length;
    const done = new Promise<void>((resolve) => (roundResolve = resolve));
    let next = 0;
    const body = JSON.stringify({ targetMib });
    const worker = async () => {
      while (next < guests.length) {
        const g = guests[next++]!;
        sentAt.set(g.name, performance.now());
        const status = await put(httpAgent, `${url}/api/v1/vms/${encodeURIComponent(g.name)}/balloon`, body, headers);
        if (status !== 202 && status !== 200) throw new Error(`${label}: PUT ${g.name} answered ${status}`);
        sent += 1;
      }
    };
    await Promise.all(Array.from({ length: opts.httpConcurrency }, worker));
    await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
    roundTimes.push(performance.now() - roundStart);
    const rest = opts.roundIntervalMs - (performance.now() - roundStart);
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
  }
  const elapsedS = (performance.now() - t0) / 1000;
  const cpu = ((cpuTicks(pid) - ticks0) / CLK_TCK / elapsedS) * 100;
  const rss = rssMib(pid);
  clearInterval(statsTimer);
  httpAgent.destroy();
  for (const g of guests) g.ws.close();
  latencies.sort((a, b) => a - b);
  roundTimes.sort((a, b) => a - b);
  return {
    label,
    guests: guests.length,
    targetsSent: sent,
    targetsDelivered: latencies.length,
    latencyP50Ms: percentile(latencies, 50),
    latencyP99Ms: percentile(latencies, 99),
    roundP99Ms: percentile(roundTimes, 99),
    hostCpuPercent: cpu,
    hostRssMib: rss,
  };
}

/** Options for the host under test: how to start it and how to authenticate. */
export interface HostUnderTest {
  args: (dataDir: string) => string[];
  headers: (dataDir: string) => Record<string, string>;
}

/** Runs the load benchmark against our host and the null host; returns both results. */
export async function runLoadBench(partial: Partial<LoadOptions> = {}, host?: HostUnderTest): Promise<LoadResult[]> {
  const opts: LoadOptions = { guests: 1000, memoryMib: 64, rounds: 8, roundIntervalMs: 3000, statsIntervalMs: 1000, httpConcurrency: 32, ...partial };
  const root = new URL('../..', import.meta.url).pathname;
  const results: LoadResult[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-load-'));
  const ours = host ?? {
    args: (dir: string) => [
      join(root, 'packages/host/bin/balloon-host.mjs'),
      '--listen', '127.0.0.1:0', '--data-dir', dir, '--pool-mib', String(opts.guests * opts.memoryMib * 2), '--auto-register',
    ],
    // The admin token the host made in its data directory at start (mode 0600), as balloonctl reads it.
    headers: (dir: string) => ({ authorization: `Bearer ${readFileSync(join(dir, 'admin.token'), 'utf8').trim()}` }),
  };
  try {
    const runs: Array<[string, string[], Record<string, string>]> = [
      ['null host (reference)', ['--import', 'tsx', join(root, 'scripts/bench/null-host.ts')], {}],
      ['memballoon host', ours.args(dataDir), {}],
    ];
    for (const [label, args] of runs) {
      const { child, url } = await startProcess(process.execPath, args, join(dataDir, `${label.split(' ')[0]}.log`));
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
