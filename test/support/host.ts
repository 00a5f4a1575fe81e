// Start the real host and agent CLIs for end-to-end tests: free ports (port
// 0, the URL read from the host's readiness line), deadlines, and cleanup of
// every process a test started.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Paths of the CLIs. */
export const BIN = {
  host: join(ROOT, 'packages/host/bin/balloon-host.mjs'),
  ctl: join(ROOT, 'packages/host/bin/balloonctl.mjs'),
  agent: join(ROOT, 'packages/guest-agent/bin/balloon-agent.mjs'),
};

/** A process started by a test. */
export interface Started {
  proc: ChildProcess;
  pid: number;
  /** Everything it wrote so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then waits for the exit (SIGKILL after the deadline). */
  stop(timeoutMs?: number): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

/** What a tracked process is: stopAll stops agents before hosts. */
type Kind = 'agent' | 'host' | 'other';
const started = new Map<Started, Kind>();

function track(proc: ChildProcess, kind: Kind = 'other'): Started {
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString('utf8')));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const s: Started = {
    proc,
    pid: proc.pid ?? -1,
    output: () => out,
    async stop(timeoutMs = 10_000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      started.delete(s);
      return code;
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
      started.delete(s);
    },
  };
  started.set(s, kind);
  return s;
}

/**
 * Stops every process the tests started: the agents first, each saying its
 * Goodbye to a host that still runs (so a host never sees a mass disconnect
 * during teardown), then the hosts, then anything else.
 */
export async function stopAll(): Promise<void> {
  for (const kind of ['agent', 'host', 'other'] as const) {
    await Promise.all([...started].filter(([, k]) => k === kind).map(([s]) => s.stop(5_000)));
  }
}

/** A temporary data directory, removed by the returned function. */
export function tempDataDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'memballoon-e2e-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A running balloon-host. */
export interface StartedHost extends Started {
  url: string;
  dataDir: string;
}

// Hosts need tokens (issue 8). The helpers keep tests short: ctl and apiGet
// send the admin token of the host's data directory, createvm's guest token
// is remembered by VM name and handed to spawnAgent unless a test passes one.
const dataDirOf = new Map<string, string>();
const guestTokens = new Map<string, string>();

/** The admin token of a host started by spawnHost (read from its data directory). */
export function adminTokenOf(url: string): string | undefined {
  const dir = dataDirOf.get(url);
  if (dir === undefined) return undefined;
  try {
    return readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The guest token createvm printed for a VM in this test file, if any. */
export function guestTokenOf(name: string): string | undefined {
  return guestTokens.get(name);
}

function rememberToken(args: readonly string[], stdout: string): void {
  if (!args.includes('createvm')) return;
  const name = args[args.indexOf('--name') + 1];
  const token = /"token":\s*"([^"]+)"/.exec(stdout)?.[1] ?? /^Token: (\S+)/m.exec(stdout)?.[1];
  if (name !== undefined && token !== undefined) guestTokens.set(name, token);
}

/** Where a host started by spawnHost records itself for balloonctl (MEMBALLOON_RUNTIME_DIR). */
export function runtimeDirOf(dataDir: string): string {
  return join(dataDir, 'run');
}

/** Starts balloon-host on a free port and waits for its readiness line. */
export async function spawnHost(opts: { dataDir: string; poolSizeMib: number; autoRegister?: boolean; extra?: string[] }): Promise<StartedHost> {
  const args = [BIN.host, '--listen', '127.0.0.1:0', '--data-dir', opts.dataDir, '--pool-mib', String(opts.poolSizeMib), '--log-level', 'debug'];
  if (opts.autoRegister) args.push('--auto-register');
  args.push(...(opts.extra ?? []));
  // The host records where it is for balloonctl (cli/host-record.ts): inside its data dir, not the user's.
  const env = { ...process.env, MEMBALLOON_LOG_PRETTY: '0', MEMBALLOON_RUNTIME_DIR: runtimeDirOf(opts.dataDir) };
  const s = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env }), 'host');
  const url = await waitFor(
    () => {
      if (s.proc.exitCode !== null) throw new Error(`balloon-host exited with ${s.proc.exitCode}: ${s.output()}`);
      const m = /"url":"(https?:\/\/[^"]+)"[^\n]*"msg":"balloon-host listening"/.exec(s.output());
      return m?.[1];
    },
    { what: 'balloon-host to listen', timeoutMs: 20_000 },
  );
  dataDirOf.set(url, opts.dataDir);
  return Object.assign(s, { url, dataDir: opts.dataDir });
}

/**
 * Starts balloon-agent for VM `name` in the process domain, or with
 * `cgroupDir` inside that memory cgroup from its first page (a shell moves
 * itself in and execs the agent, as the launcher's shim does) in the cgroup
 * domain.
 */
export function spawnAgent(opts: { url: string; name: string; memoryMib: number; floorMib?: number; extra?: string[]; cgroupDir?: string }): Started {
  const domain = opts.cgroupDir === undefined ? 'process' : 'cgroup';
  const args = [BIN.agent, '--host', opts.url, '--name', opts.name, '--memory-mib', String(opts.memoryMib), '--domain', domain, '--log-level', 'info'];
  if (opts.floorMib !== undefined) args.push('--floor-mib', String(opts.floorMib));
  args.push(...(opts.extra ?? []));
  const token = opts.extra?.includes('--token') ? undefined : guestTokens.get(opts.name);
  const env = { ...process.env, MEMBALLOON_TOKEN: token ?? '' };
  const argv =
    opts.cgroupDir === undefined
      ? [process.execPath, ...args]
      : ['/bin/sh', '-c', 'echo $$ > "$1/cgroup.procs" || exit 125; shift; exec "$@"', 'agent-shim', opts.cgroupDir, process.execPath, ...args];
  return track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env }), 'agent');
}

/** The result of one balloonctl run. */
export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs balloonctl against `url` (as --host). */
export function ctl(url: string, ...args: string[]): Promise<CtlResult> {
  return new Promise((resolve) => {
    const dir = dataDirOf.get(url);
    const env = {
      ...process.env,
      MEMBALLOON_URL: '',
      MEMBALLOON_ADMIN_TOKEN: '',
      MEMBALLOON_DATA_DIR: dir ?? '',
      MEMBALLOON_RUNTIME_DIR: dir === undefined ? '' : runtimeDirOf(dir),
    };
    execFile(process.execPath, [BIN.ctl, '--host', url, ...args], { timeout: 60_000, env }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      if (code === 0) rememberToken(args, stdout);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs balloonctl with --json and parses its output; throws with stderr on failure. */
export async function ctlJson<T = unknown>(url: string, ...args: string[]): Promise<T> {
  const r = await ctl(url, ...args, '--json');
  if (r.code !== 0) throw new Error(`balloonctl ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as T;
}

/** GET a JSON path of the admin API. */
export async function apiGet<T = unknown>(url: string, path: string): Promise<T> {
  const token = adminTokenOf(url);
  const res = await fetch(`${url}/api/v1${path}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
