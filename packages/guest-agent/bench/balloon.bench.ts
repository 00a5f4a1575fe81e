// Balloon benchmark (not a test): our inflate/deflate against C references
// (mmap, touch every page; one thread, and two threads each touching half,
// the fair reference since the agent commits from both cores) of the same
// size, run alternately in
// the same process tree, because on free-page-reporting guests memory freed
// seconds ago faults far slower than memory freed just now: only side-by-side
// ratios mean anything. Also the time for RSS to come back after a deflate,
// and the reaction from a target's arrival to the first chunk pinned.
//
//   npx tsx packages/guest-agent/bench/balloon.bench.ts
import { execFileSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { bodies } from '@memballoon/protocol';
import { BalloonEngine } from '../src/balloon/engine.js';
import { MachineDomain, readMachineMemory } from '../src/domain/readers.js';
import { startAgent } from '../src/agent.js';
import type { DomainSource } from '../src/domain/source.js';
import { StubHost } from '../src/test-support/stub-host.js';

/** One row of the benchmark table. */
export interface BenchRow {
  metric: string;
  sizeMib: number;
  ours: number;
  baseline: number | null;
  /** ours/baseline in throughput terms (higher is better); null where there is no baseline. */
  ratio: number | null;
  unit: string;
}

const C_SOURCE = String.raw`
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
static int cmp(const void*a,const void*b){double x=*(const double*)a,y=*(const double*)b;return (x>y)-(x<y);}
/* pin N [CHURN]: N times map 1 MiB, mlock it, touch every page; print p50 and p99 in ms.
   With CHURN, each sample is followed by what the balloon benchmark does around
   its own samples: (1 + i % CHURN) MiB more pinned, touched and freed. */
static int pin(int n,int churn){long pg=sysconf(_SC_PAGESIZE); size_t sz=1<<20; double*t=malloc(n*sizeof(double));
  for(int i=0;i<n;i++){double t0=now(); volatile char*p=mmap(0,sz,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
    if(p==MAP_FAILED){perror("mmap");return 1;} mlock((void*)p,sz); for(size_t j=0;j<sz;j+=pg)p[j]=(char)(j/pg+1);
    t[i]=(now()-t0)*1e3;
    if(churn){size_t e=(size_t)(1+i%churn)<<20; volatile char*q=mmap(0,e,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
      if(q==MAP_FAILED){perror("mmap");return 1;} mlock((void*)q,e); for(size_t j=0;j<e;j+=pg)q[j]=1; munlock((void*)q,e); munmap((void*)q,e);}
    munlock((void*)p,sz); munmap((void*)p,sz);}
  qsort(t,n,sizeof(double),cmp); printf("%.4f %.4f\n",t[n/2],t[n*99/100]); return 0;}
struct half{volatile char*p;size_t from,to;long pg;};
static void*touch(void*a){struct half*h=a;for(size_t i=h->from;i<h->to;i+=h->pg)h->p[i]=1;return 0;}
/* SIZE_MIB [THREADS]: mmap SIZE, touch every page from THREADS threads (1 or 2), munmap; print both in ms. */
int main(int argc,char**argv){
  if(argc>2&&argv[1][0]=='p')return pin(atoi(argv[2]),argc>3?atoi(argv[3]):0);
  size_t n=strtoull(argv[1],0,10)<<20; long pg=sysconf(_SC_PAGESIZE); int threads=argc>2?atoi(argv[2]):1;
  double t0=now();
  volatile char*p=mmap(0,n,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  if(p==MAP_FAILED){perror("mmap");return 1;}
  if(threads==2){pthread_t t;struct half a={p,0,n/2,pg},b={p,n/2,n,pg};
    pthread_create(&t,0,touch,&a);touch(&b);pthread_join(t,0);}
  else for(size_t i=0;i<n;i+=pg)p[i]=1;
  double t1=now(); munmap((void*)p,n); double t2=now();
  printf("%.3f %.3f\n",(t1-t0)*1e3,(t2-t1)*1e3); return 0;}
`;

function buildBaseline(dir: string): string {
  const src = join(dir, 'touch.c');
  const bin = join(dir, 'touch');
  writeFileSync(src, C_SOURCE);
  execFileSync('cc', ['-O2', '-pthread', '-o', bin, src]);
  return bin;
}

function runBaseline(bin: string, sizeMib: number, threads: 1 | 2): { inflateMs: number; deflateMs: number } {
  const [inflateMs, deflateMs] = execFileSync(bin, [String(sizeMib), String(threads)], { encoding: 'utf8' })
    .trim()
    .split(' ')
    .map(Number);
  return { inflateMs: inflateMs!, deflateMs: deflateMs! };
}

function runPinBaseline(bin: string, samples: number, churnMib = 0): { p50Ms: number; p99Ms: number } {
  const [p50Ms, p99Ms] = execFileSync(bin, ['pin', String(samples), String(churnMib)], { encoding: 'utf8' })
    .trim()
    .split(' ')
    .map(Number);
  return { p50Ms: p50Ms!, p99Ms: p99Ms! };
}

/** A latency row: the ratio is reference / ours, so above 1 means we are faster. */
function latencyRow(metric: string, oursMs: number, referenceMs: number): BenchRow {
  return { metric, sizeMib: 1, ours: oursMs, baseline: referenceMs, ratio: referenceMs / oursMs, unit: 'ms' };
}

async function bareWebSocketOneWayMs(samples: number): Promise<{ p50Ms: number; p99Ms: number }> {
  // The floor under the wire row: a bare ws frame from a server to a client
  // in this process, no protocol, no balloon.
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const serverSide = once(server, 'connection') as Promise<[WebSocket]>;
  const client = new WebSocket(`ws://127.0.0.1:${port}`);
  await once(client, 'open');
  const [peer] = await serverSide;
  const latencies: number[] = [];
  const frame = new Uint8Array(16);
  for (let i = 0; i < samples; i++) {
    const got = once(client, 'message');
    const t0 = performance.now();
    peer.send(frame);
    await got;
    latencies.push(performance.now() - t0);
  }
  client.close();
  server.close();
  return { p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

function rssMib(): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Reaction samples per row, for ours and for the C reference alike. */
const REACTION_SAMPLES = 1000;

const gibPerS = (mib: number, ms: number): number => mib / 1024 / (ms / 1000);

async function sizeRows(engine: BalloonEngine, bin: string, sizeMib: number, rounds: number): Promise<BenchRow[]> {
  const ours = { inflate: [] as number[], deflate: [] as number[], rssBack: [] as number[] };
  const base = { inflate: [] as number[], deflate: [] as number[] };
  const base2 = { inflate: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    // Rotate who goes first, so no one always gets the freshly freed memory.
    const order = (['c', 'c2', 'ours'] as const).map((_, i, all) => all[(i + r) % all.length]!);
    for (const who of order) {
      if (who === 'c') {
        const c = runBaseline(bin, sizeMib, 1);
        base.inflate.push(c.inflateMs);
        base.deflate.push(c.deflateMs);
        continue;
      }
      if (who === 'c2') {
        base2.inflate.push(runBaseline(bin, sizeMib, 2).inflateMs);
        continue;
      }
      const before = rssMib();
      let t0 = performance.now();
      engine.setTarget(sizeMib);
      const up = await engine.settled();
      ours.inflate.push(performance.now() - t0);
      if (up.actualMib !== sizeMib) throw new Error(`inflate stopped at ${up.actualMib} MiB: ${up.reason} ${up.detail}`);
      t0 = performance.now();
      engine.setTarget(0);
      await engine.settled();
      const settledAt = performance.now();
      ours.deflate.push(settledAt - t0);
      // RSS back: within 16 MiB of where it was before the inflate.
      while (rssMib() > before + 16 && performance.now() - settledAt < 5000) await new Promise((r) => setImmediate(r));
      ours.rssBack.push(performance.now() - settledAt);
    }
  }
  const inflateOurs = gibPerS(sizeMib, median(ours.inflate));
  const inflateBase = gibPerS(sizeMib, median(base.inflate));
  const inflateBase2 = gibPerS(sizeMib, median(base2.inflate));
  const deflateOurs = gibPerS(sizeMib, median(ours.deflate));
  const deflateBase = gibPerS(sizeMib, median(base.deflate));
  return [
    { metric: 'inflate (C: mmap + touch, 2 threads)', sizeMib, ours: inflateOurs, baseline: inflateBase2, ratio: inflateOurs / inflateBase2, unit: 'GiB/s' },
    { metric: 'inflate (C: mmap + touch, 1 thread)', sizeMib, ours: inflateOurs, baseline: inflateBase, ratio: inflateOurs / inflateBase, unit: 'GiB/s' },
    { metric: 'deflate (C: munmap)', sizeMib, ours: deflateOurs, baseline: deflateBase, ratio: deflateOurs / deflateBase, unit: 'GiB/s' },
    { metric: 'RSS back after deflate (p50)', sizeMib, ours: median(ours.rssBack), baseline: null, ratio: null, unit: 'ms' },
    { metric: 'RSS back after deflate (max)', sizeMib, ours: Math.max(...ours.rssBack), baseline: null, ratio: null, unit: 'ms' },
  ];
}

async function reactionRows(engine: BalloonEngine, bin: string, samples: number): Promise<BenchRow[]> {
  // A steady balloon receives a new, larger target: from the call that hands
  // the target to the engine to the first chunk pinned.
  engine.setTarget(16);
  await engine.settled();
  const latencies: number[] = [];
  for (let i = 1; i <= samples; i++) {
    let pinnedAt = 0;
    const on = (): void => {
      pinnedAt ||= performance.now();
    };
    engine.once('chunk', on);
    const t0 = performance.now();
    engine.setTarget(16 + (i % 32) + 1);
    await engine.settled();
    latencies.push(pinnedAt - t0);
    engine.setTarget(16);
    await engine.settled();
  }
  engine.setTarget(0);
  await engine.settled();
  const c = runPinBaseline(bin, samples);
  // A second reference, next to (not instead of) the first: C with the
  // same memory traffic between samples as ours (each of our samples
  // inflates 1–32 MiB more and deflates them). On this guest freed memory
  // is reported to the hypervisor at once (page_reporting min_free_ms 0),
  // and memory touched again after that faults in the host too: the plain
  // loop above reuses its one hot MiB and never pays it.
  const churned = runPinBaseline(bin, samples, 32);
  const p50Ms = percentile(latencies, 50);
  const p99Ms = percentile(latencies, 99);
  return [
    latencyRow('target → first chunk pinned, p50 (C: mmap+mlock+touch 1 MiB)', p50Ms, c.p50Ms),
    latencyRow('target → first chunk pinned, p99 (C: mmap+mlock+touch 1 MiB)', p99Ms, c.p99Ms),
    latencyRow('target → first chunk pinned, p50 (same C, + our 1–32 MiB churn between samples)', p50Ms, churned.p50Ms),
    latencyRow('target → first chunk pinned, p99 (same C, + our 1–32 MiB churn between samples)', p99Ms, churned.p99Ms),
  ];
}

async function wireReactionRows(bin: string, samples: number): Promise<BenchRow[]> {
  // The same over a real WebSocket: from the host's send to the first chunk
  // pinned in the agent (host and agent share this process, so one clock).
  const host = await StubHost.start();
  // The machine's own figures, with a fixed size so the floor stays out of the way.
  const machine = new MachineDomain();
  const domain: DomainSource = {
    kind: 'machine',
    totalMib: 4096,
    availability: () => ({ totalBytes: 4096 * 2 ** 20, availableBytes: 4000 * 2 ** 20 }),
    stats: () => machine.stats(),
  };
  const agent = await startAgent({ host: host.url, name: 'bench', domain, oomScoreAdj: null });
  try {
    for (const deadline = Date.now() + 10_000; !host.latest?.frames.length; ) {
      if (Date.now() > deadline) throw new Error('no Hello');
      await new Promise((r) => setTimeout(r, 5));
    }
    const conn = host.latest!;
    host.welcome(conn, { targetMib: 16, generation: 1, statsIntervalMs: 60_000 });
    while (agent.balloon.actualMib !== 16 || agent.engine.moving) await new Promise((r) => setTimeout(r, 5));
    const latencies: number[] = [];
    let generation = 1;
    for (let i = 1; i <= samples; i++) {
      const pinned = new Promise<number>((resolve) => agent.engine.once('chunk', () => resolve(performance.now())));
      const t0 = performance.now();
      host.send(conn, bodies.setBalloonTarget({ targetMib: 16 + (i % 32) + 1, generation: ++generation }));
      latencies.push((await pinned) - t0);
      await agent.engine.settled();
      // Wait for the deflate by its events, not by spinning on setImmediate:
      // a spinning main thread used up its time slice right before the next
      // sample, which the scheduler then preempted more often under load.
      const deflateTo = ++generation;
      const applied = new Promise<void>((resolve) => {
        const on = (t: { generation: number }): void => {
          if (t.generation !== deflateTo) return;
          agent.engine.off('target', on);
          resolve();
        };
        agent.engine.on('target', on);
      });
      host.send(conn, bodies.setBalloonTarget({ targetMib: 16, generation: deflateTo }));
      await applied;
      await agent.engine.settled();
    }
    // The floor under this path: a bare ws frame one way plus C pinning 1 MiB.
    const bare = await bareWebSocketOneWayMs(samples);
    const c = runPinBaseline(bin, samples);
    return [
      latencyRow('host send → first chunk pinned, p50 (ref: bare ws frame + C pin)', percentile(latencies, 50), bare.p50Ms + c.p50Ms),
      latencyRow('host send → first chunk pinned, p99 (ref: bare ws frame + C pin)', percentile(latencies, 99), bare.p99Ms + c.p99Ms),
    ];
  } finally {
    await agent.close();
    await host.close();
  }
}

/** wireReactionRows in a fresh child process (this file, `--wire BIN SAMPLES`), its rows sent back over IPC. */
async function wireReactionRowsInChild(bin: string, samples: number): Promise<BenchRow[]> {
  // With the V8 flag the balloon-agent command sets (bin/balloon-agent.mjs:
  // no optimizing compiler), so the agent measured is the agent users run;
  // the bare-ws reference beside it runs in the same process, so with it too.
  const execArgv = [...process.execArgv, '--no-opt'];
  const child = fork(fileURLToPath(import.meta.url), ['--wire', bin, String(samples)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const rows = once(child, 'message') as Promise<[BenchRow[]]>;
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`the socket rows' process exited with ${code}`);
  return (await rows)[0];
}

/** Runs the balloon benchmark and returns its rows (the root `npm run bench` prints them). */
export async function runBalloonBench(options: { rounds?: number; log?: (line: string) => void } = {}): Promise<BenchRow[]> {
  const log = options.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'memballoon-bench-'));
  const engine = new BalloonEngine();
  let engineClosed = false;
  try {
    const bin = buildBaseline(dir);
    const rows: BenchRow[] = [];
    // Warm up: worker isolates and code paths cost memory once, which is
    // not the balloon's and must not count in "RSS back".
    engine.setTarget(64);
    await engine.settled();
    engine.setTarget(0);
    await engine.settled();
    const availableMib = readMachineMemory().availableBytes / 2 ** 20;
    // 4 GiB only where the machine has room for it twice over (ours and C
    // never overlap, but the guest must keep breathing).
    const sizes = availableMib > 4096 * 2 + 1024 ? [1024, 4096] : [1024];
    for (const sizeMib of sizes) {
      log(`inflate/deflate ${sizeMib} MiB…`);
      rows.push(...(await sizeRows(engine, bin, sizeMib, options.rounds ?? (sizeMib > 1024 ? 3 : 7))));
    }
    log('reaction…');
    // 1,000 samples (ours and C alike): with 200, a p99 is the 2nd-slowest
    // sample and moved by 2x between runs on a quiet machine.
    rows.push(...(await reactionRows(engine, bin, REACTION_SAMPLES)));
    // The socket rows run in a process of their own, as an agent does: the
    // engine of the rows above (its idle workers, GBs of reused address
    // space, a heap grown by 4 GiB cycles) must not share the process with
    // the agent they measure, nor with the bare-ws reference beside it.
    await engine.close();
    engineClosed = true;
    rows.push(...(await wireReactionRowsInChild(bin, REACTION_SAMPLES)));
    return rows;
  } finally {
    if (!engineClosed) await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Formats rows as a Markdown table. */
export function formatBenchTable(rows: BenchRow[]): string {
  const f = (n: number | null, digits = 2): string => (n === null ? '—' : n.toFixed(digits));
  const lines = ['| metric | size | ours | reference (same run) | ratio | unit |', '|---|---:|---:|---:|---:|---|'];
  for (const r of rows)
    lines.push(
      `| ${r.metric} | ${r.sizeMib >= 1024 ? `${r.sizeMib / 1024} GiB` : `${r.sizeMib} MiB`} | ${f(r.ours, r.unit === 'ms' ? 3 : 2)} | ${f(r.baseline)} | ${f(r.ratio)} | ${r.unit} |`,
    );
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href && process.argv[2] === '--wire') {
  const rows = await wireReactionRows(process.argv[3]!, Number(process.argv[4]));
  // Forked by runBalloonBench, or run by hand (`--wire BIN SAMPLES`, BIN built by a full run).
  if (process.send) process.send(rows, undefined, {}, () => process.exit(0));
  else process.stdout.write(`${formatBenchTable(rows)}\n`);
} else if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await runBalloonBench({ log: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(`balloon benchmark, ${new Date().toISOString().slice(0, 10)}\n\n${formatBenchTable(rows)}\n`);
}
