// Start-up cost of the commands as users run them (issue 15): the built bins
// (dist/, plain node, no NODE_OPTIONS so never the source condition or tsx)
// against a bare `node -e 0` measured in the same run, interleaved round by
// round so that a busy machine slows both alike; and the agent's idle RSS
// against a bare node process that only keeps a timer.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CTL = join(ROOT, 'packages/host/bin/balloonctl.mjs');
const HOST = join(ROOT, 'packages/host/bin/balloon-host.mjs');
const AGENT = join(ROOT, 'packages/guest-agent/bin/balloon-agent.mjs');

/** One timed command: median and p90 wall time of a whole process, and the reference's in the same rounds. */
export interface CliTimeRow {
  command: string;
  medianMs: number;
  p90Ms: number;
  refMedianMs: number;
}

/** Idle resident memory of the agent against a bare node process: all of it, and its anonymous part. */
export interface CliRssRow {
  agentRssMib: number;
  refRssMib: number;
  /** RssAnon: the process's own memory, without the file pages (mostly the node binary) that every node process shares. */
  agentAnonMib: number;
  refAnonMib: number;
}

/** Everything the CLI bench measured. */
export interface CliBenchResult {
  runs: number;
  times: CliTimeRow[];
  rss: CliRssRow;
}

/** The environment of the measured processes: this one without NODE_OPTIONS (npm run bench sets the source condition). */
function builtEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  for (const k of Object.keys(env)) if (k.startsWith('MEMBALLOON_')) delete env[k];
  return env;
}

function timeOnceMs(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr.toString('utf8')}`);
  return ms;
}

const quantile = (values: number[], q: number): number => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

function statusMib(pid: number, field: 'VmRSS' | 'RssAnon'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no ${field} for pid ${pid}`);
  return Number(m[1]) / 1024;
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`bench: ${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function started(cmd: string, args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string } {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  return { child, output: () => out };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** Runs the CLI bench: `runs` interleaved rounds of each command and its reference, then the idle RSS after `idleMs`. */
export async function runCliBench(opts: { runs?: number; vms?: number; idleMs?: number; log?: (line: string) => void } = {}): Promise<CliBenchResult> {
  const runs = opts.runs ?? 20;
  const vms = opts.vms ?? 5;
  const idleMs = opts.idleMs ?? 10_000;
  const log = opts.log ?? (() => {});
  const env = builtEnv();
  const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-bench-cli-'));
  const host = started(
    process.execPath,
    [HOST, '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--pool-mib', '4096', '--log-level', 'info', '--policy-interval-ms', '0'],
    { ...env, MEMBALLOON_LOG_PRETTY: '0' },
  );
  const children: ChildProcess[] = [host.child];
  try {
    const url = await until('balloon-host to listen', () => /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"balloon-host listening"/.exec(host.output())?.[1]);
    const ctlArgs = ['--host', url, '--data-dir', dataDir];
    let token = '';
    for (let i = 0; i < vms; i++) {
      const r = spawnSync(process.execPath, [CTL, ...ctlArgs, '--json', 'createvm', '--name', `bench-${i}`, '--memory', '512'], { env, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`createvm: ${r.stderr}`);
      if (i === 0) token = (JSON.parse(r.stdout) as { token: string }).token;
    }

    const commands: Array<[label: string, args: string[]]> = [
      ['balloonctl --version', [CTL, '--version']],
      [`balloonctl list vms (${vms} VMs, a live host)`, [CTL, ...ctlArgs, 'list', 'vms']],
      ['balloon-agent --version', [AGENT, '--version']],
    ];
    const ref = ['-e', '0'];
    const ours = commands.map(() => [] as number[]);
    const refs: number[] = [];
    // One warm-up of each (the page cache), then interleaved rounds.
    for (const [, args] of commands) timeOnceMs(args, env);
    timeOnceMs(ref, env);
    for (let i = 0; i < runs; i++) {
      refs.push(timeOnceMs(ref, env));
      commands.forEach(([, args], j) => ours[j]!.push(timeOnceMs(args, env)));
    }
    log(`cli: ${runs} rounds of ${commands.length} commands and node -e 0`);
    const refMedianMs = quantile(refs, 0.5);
    const times = commands.map(([command], j) => ({ command, medianMs: quantile(ours[j]!, 0.5), p90Ms: quantile(ours[j]!, 0.9), refMedianMs }));

    // Idle RSS: the agent connected, no balloon, after idleMs; the reference after the same time.
    const agent = started(
      process.execPath,
      [AGENT, '--host', url, '--name', 'bench-0', '--token', token, '--memory-mib', '512', '--domain', 'process', '--log-level', 'warn'],
      env,
    );
    children.push(agent.child);
    const bare = started(process.execPath, ['-e', 'setInterval(()=>{},1000)'], env);
    children.push(bare.child);
    await until('the agent to connect', () => {
      const r = spawnSync(process.execPath, [CTL, ...ctlArgs, '--json', 'showvminfo', 'bench-0'], { env, encoding: 'utf8' });
      if (agent.child.exitCode !== null) throw new Error(`balloon-agent exited: ${agent.output()}`);
      return r.status === 0 && (JSON.parse(r.stdout) as { state: string }).state === 'running' ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, idleMs));
    const [a, b] = [agent.child.pid!, bare.child.pid!];
    const rss = {
      agentRssMib: statusMib(a, 'VmRSS'),
      refRssMib: statusMib(b, 'VmRSS'),
      agentAnonMib: statusMib(a, 'RssAnon'),
      refAnonMib: statusMib(b, 'RssAnon'),
    };
    log(
      `cli: agent idle RSS ${rss.agentRssMib.toFixed(1)} MiB (anonymous ${rss.agentAnonMib.toFixed(1)}), bare node ${rss.refRssMib.toFixed(1)} MiB (${rss.refAnonMib.toFixed(1)})`,
    );
    return { runs, times, rss };
  } finally {
    for (const c of children.reverse()) await stop(c);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The CLI bench as Markdown tables. */
export function formatCliBench(r: CliBenchResult): string {
  const lines = [
    `| command (built, plain node) | median | p90 | \`node -e 0\` median (same run) | ratio | goal |`,
    '|---|---:|---:|---:|---:|---|',
    ...r.times.map(
      (t) =>
        `| \`${t.command}\` | ${t.medianMs.toFixed(0)} ms | ${t.p90Ms.toFixed(0)} ms | ${t.refMedianMs.toFixed(0)} ms | ${(t.medianMs / t.refMedianMs).toFixed(2)}× | ≤ 2× |`,
    ),
    '',
    "| process | idle RSS | reference: `node -e 'setInterval(()=>{},1000)'` | ratio | goal |",
    '|---|---:|---:|---:|---|',
    `| balloon-agent, connected, no balloon | ${r.rss.agentRssMib.toFixed(1)} MiB | ${r.rss.refRssMib.toFixed(1)} MiB | ${(r.rss.agentRssMib / r.rss.refRssMib).toFixed(2)}× | ≤ 60 MiB |`,
    `| of which anonymous (RssAnon: not the shared node binary) | ${r.rss.agentAnonMib.toFixed(1)} MiB | ${r.rss.refAnonMib.toFixed(1)} MiB | ${(r.rss.agentAnonMib / r.rss.refAnonMib).toFixed(2)}× | |`,
  ];
  return lines.join('\n');
}
