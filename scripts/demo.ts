// npm start: the local demo. On loopback it starts the host (balloon-host, its
// registry under .data/demo, auto-registration on, a pool smaller than the
// guests' sum so overcommitment shows) and has it start three guests with
// startvm (each in its own memory cgroup where the machine allows, else as a
// plain process tree), prints the dashboard's URL and commands to try, and on
// Ctrl-C powers the guests off first (they deflate and say goodbye), then
// stops the host.
//
// The host runs in its own process group: the terminal's Ctrl-C reaches only
// this script, which then stops everything in order. Logs go to files (the
// guests' to the same directory, written by the host), so the terminal shows
// only what a newcomer needs.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { get, request } from 'node:http';
import { createServer } from 'node:net';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The demo's settings: flags, nothing else (`npm start -- --port 7460`). */
interface DemoConfig {
  /** 0: any free port (tests); the URL is then read from the host's readiness line. */
  readonly port: number;
  readonly poolSizeMib: number;
  readonly dataDir: string;
}

/** One guest of the demo. */
interface Guest {
  readonly name: string;
  readonly memoryMib: number;
}

const GUESTS: readonly Guest[] = [
  { name: 'vm-small', memoryMib: 512 },
  { name: 'vm-medium', memoryMib: 768 },
  { name: 'vm-large', memoryMib: 1024 },
];
const DEFAULT_PORT = 7450;
const DEFAULT_POOL_SIZE_MIB = 1536;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_DATA_DIR = fileURLToPath(new URL('../.data/demo/', import.meta.url));
const HOST_BIN = fileURLToPath(new URL('../packages/host/bin/balloon-host.mjs', import.meta.url));
// What each guest runs under its agent: an idle Node process (portable, unlike `sleep infinity`).
const GUEST_COMMAND = [process.execPath, '-e', 'setInterval(() => {}, 1 << 30)'];

/** A child process of the demo and where its log goes. */
interface Child {
  readonly label: string;
  readonly process: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or 128 + signal) once the process has exited. */
  readonly exited: Promise<number>;
}

class DemoError extends Error {
  override readonly name = 'DemoError';
}

function parseArgs(argv: readonly string[]): DemoConfig {
  let port = DEFAULT_PORT;
  let poolSizeMib = DEFAULT_POOL_SIZE_MIB;
  let dataDir = DEFAULT_DATA_DIR;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const whole = (min: number, max: number): number => {
      i++;
      const n = Number(value);
      if (value === undefined || !/^\d+$/.test(value) || n < min || n > max) throw new DemoError(`${flag} needs a whole number from ${min} to ${max}`);
      return n;
    };
    if (flag === '--port') port = whole(0, 65535);
    else if (flag === '--pool-mib') poolSizeMib = whole(64, 1 << 20);
    else if (flag === '--data-dir' && value) {
      i++;
      dataDir = value.endsWith('/') ? value : `${value}/`;
    } else throw new DemoError(`unknown option '${flag}' (options: --port N, --pool-mib N, --data-dir DIR)`);
  }
  return Object.freeze({ port, poolSizeMib, dataDir });
}

/** Fails with a one-line reason if something already listens on the port (a demo already running, usually). */
async function ensurePortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        reject(new DemoError(`127.0.0.1:${port} is already in use — is another \`npm start\` running? (or use \`npm start -- --port N\`)`));
      } else {
        reject(new DemoError(`cannot use 127.0.0.1:${port}: ${err.message}`));
      }
    });
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

function startChild(logDir: string, label: string, bin: string, args: readonly string[]): Child {
  const logFile = `${logDir}${label}.log`;
  const fd = openSync(logFile, 'w');
  // JSON logs: the readiness line is parsed (and files read better without colour codes).
  const env = { ...process.env };
  delete env.MEMBALLOON_LOG_PRETTY;
  const child = spawn(process.execPath, [bin, ...args], { cwd: ROOT, env, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.once('error', () => resolve(127));
  });
  return { label, process: child, logFile, exited };
}

function lastLines(file: string, count = 8): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-count).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A path as short as it reads well: relative to here when inside it, else absolute. */
function shown(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel === '' || rel.startsWith('..') ? file : rel;
}

/** Polls `probe` every 100 ms until it returns true, the child exits (fails), or the deadline passes (fails). */
async function until(what: string, child: Child, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let exitCode: number | undefined;
  void child.exited.then((code) => (exitCode = code));
  for (;;) {
    if (exitCode !== undefined) {
      throw new DemoError(
        `${child.label} exited (code ${exitCode}) while waiting for ${what}; its log (${shown(child.logFile)}) ends:\n${lastLines(child.logFile)}`,
      );
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new DemoError(`timed out waiting for ${what}; see ${shown(child.logFile)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What the host says in its readiness line ("balloon-host listening", pino JSON). */
interface Readiness {
  url: string;
  /** 'tokens' when the admin API needs the admin token; absent or 'off' otherwise. */
  auth?: string;
  adminTokenFile?: string;
}

/** The host's readiness line, once it has written it. */
function readiness(logFile: string): Readiness | undefined {
  let text: string;
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    if (!line.includes('balloon-host listening')) continue;
    try {
      const fields = JSON.parse(line) as Partial<Readiness>;
      if (typeof fields.url === 'string') return fields as Readiness;
    } catch {
      // Not JSON: keep looking.
    }
  }
  return undefined;
}

/** The names of the running VMs, from the first snapshot of the dashboard's event stream. */
function runningVms(baseUrl: string, adminToken: string | undefined): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const headers = adminToken ? { authorization: `Bearer ${adminToken}` } : {};
    const req = get(`${baseUrl}/api/v1/events`, { headers }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
        return;
      }
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        // The stream opens with the charts' history; the snapshot follows.
        const data = /^event: snapshot\ndata: (.*)$/m.exec(buffer);
        if (!data || !buffer.includes('\n\n', data.index)) return;
        req.destroy();
        const snapshot = JSON.parse(data[1]!) as { vms: Array<{ name: string; state: string }> };
        resolve(snapshot.vms.filter((vm) => vm.state === 'running').map((vm) => vm.name));
      });
    });
    req.setTimeout(2000, () => req.destroy(new Error('no snapshot')));
    req.on('error', reject);
  });
}

/** One admin API call with a JSON body; resolves with the status and the parsed answer. */
function api(baseUrl: string, adminToken: string | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {
      ...(adminToken ? { authorization: `Bearer ${adminToken}` } : {}),
      ...(payload ? { 'content-type': 'application/json' } : {}),
    };
    const req = request(`${baseUrl}/api/v1${path}`, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined });
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Stops one child: SIGINT, then SIGKILL if it has not exited by the deadline. Returns its exit code. */
async function stop(child: Child): Promise<number | 'killed'> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return child.exited;
  child.process.kill('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS)));
  const result = await Promise.race([child.exited, timeout]);
  clearTimeout(timer);
  if (result !== 'timeout') return result;
  child.process.kill('SIGKILL');
  await child.exited;
  return 'killed';
}

async function main(): Promise<void> {
  const config = parseArgs(process.argv.slice(2));
  if (config.port !== 0) await ensurePortFree(config.port);
  const logDir = `${config.dataDir}logs/`;
  // The data directory first, closed to others: the host refuses one that
  // others may write (they could choose its admin token), and a umask of 002
  // would otherwise make it group-writable.
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  mkdirSync(logDir, { recursive: true });

  let baseUrl = `http://127.0.0.1:${config.port}`;
  let adminToken: string | undefined;
  const started: string[] = [];
  let host: Child | undefined;
  let guestsMode: { guests?: string; guestsDetail?: string } = {};
  let stopping: Promise<void> | undefined;

  /** Guests first (poweroff: each agent deflates and says goodbye), then the host. */
  const shutdown = (why: string): Promise<void> =>
    (stopping ??= (async () => {
      process.stdout.write(`\n${why}: powering the guests off (they deflate and say goodbye), then the host…\n`);
      const results = await Promise.all(
        started.map((name) =>
          api(baseUrl, adminToken, 'POST', `/vms/${encodeURIComponent(name)}/poweroff`).then(
            (r) => (r.status === 200 ? 'stopped' : `poweroff failed: ${r.json?.error?.message ?? r.status}`),
            (err: Error) => `poweroff failed: ${err.message}`,
          ),
        ),
      );
      started.forEach((name, i) => process.stdout.write(`  ${name.padEnd(10)} ${results[i]}\n`));
      if (host) process.stdout.write(`  ${'host'.padEnd(10)} ${describeExit(await stop(host))}\n`);
    })());

  // Ctrl-C may arrive twice (from the terminal and forwarded by npm): one shutdown.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      void shutdown(signal === 'SIGINT' ? 'Ctrl-C' : signal).then(() => process.exit(0));
    });
  }
  // Last resort if this script dies with the host still up (it is in its own
  // group): SIGTERM makes it power its guests off and stop.
  process.on('exit', () => {
    if (host && host.process.exitCode === null && host.process.signalCode === null) host.process.kill('SIGTERM');
  });

  try {
    host = startChild(logDir, 'host', HOST_BIN, [
      '--listen',
      `127.0.0.1:${config.port}`,
      '--data-dir',
      config.dataDir,
      '--pool-mib',
      String(config.poolSizeMib),
      '--auto-register',
      // One parent cgroup per demo run: two demos (or a demo and its test) never share one.
      '--cgroup-parent',
      `memballoon-demo-${process.pid}`,
    ]);
    const hostChild = host;
    let ready: Readiness | undefined;
    await until('the host to listen', hostChild, async () => (ready = readiness(hostChild.logFile)) !== undefined);
    baseUrl = ready!.url.replace(/\/+$/, '');
    if (ready!.auth === 'tokens' && ready!.adminTokenFile) adminToken = readFileSync(ready!.adminTokenFile, 'utf8').trim();

    // One after the other, so the pool's admissions (and reclaims) read in
    // order in the logs. The host starts each guest (startvm): it makes the
    // VM's memory cgroup where it can, and answers once the agent is admitted.
    for (const guest of GUESTS) {
      const created = await api(baseUrl, adminToken, 'POST', '/vms', { name: guest.name, memoryMib: guest.memoryMib });
      if (created.status !== 201 && created.json?.error?.code !== 'already_exists')
        throw new DemoError(`createvm ${guest.name}: ${created.json?.error?.message ?? created.status}`);
      if ((await runningVms(baseUrl, adminToken)).includes(guest.name)) continue;
      const start = await api(baseUrl, adminToken, 'POST', `/vms/${encodeURIComponent(guest.name)}/startvm`, { command: GUEST_COMMAND });
      if (start.status !== 200) throw new DemoError(`startvm ${guest.name}: ${start.json?.error?.message ?? start.status}`);
      started.push(guest.name);
    }
    guestsMode = (await api(baseUrl, adminToken, 'GET', '/host')).json as { guests?: string; guestsDetail?: string };
  } catch (err) {
    await shutdown('start-up failed');
    throw err;
  }

  // balloonctl finds the host with --host (unless it is the default); the
  // admin token it finds on its own: the host records where its data
  // directory is (packages/host/src/cli/host-record.ts).
  const ctlFlags = baseUrl === `http://127.0.0.1:${DEFAULT_PORT}` ? '' : ` --host ${baseUrl}`;
  const dashboardUrl = adminToken ? `${baseUrl}/#token=${adminToken}` : `${baseUrl}/`;
  const guestsMib = GUESTS.reduce((sum, g) => sum + g.memoryMib, 0);
  process.stdout.write(
    [
      '',
      'memballoon demo is running.',
      '',
      `  Dashboard  ${dashboardUrl}`,
      `  Pool       ${config.poolSizeMib} MiB for ${GUESTS.map((g) => `${g.name} (${g.memoryMib} MiB)`).join(', ')}: ${guestsMib} MiB of guests`,
      `  Guests     ${guestsMode.guests === 'cgroup' ? 'each in its own memory cgroup' : 'plain process trees'} (${guestsMode.guestsDetail ?? 'started with startvm'})`,
      `  Logs       ${shown(logDir)}`,
      '',
      'Try, in another terminal (in this directory):',
      `  npx balloonctl${ctlFlags} controlvm vm-large guestmemoryballoon 256 --wait`,
      `  npx balloonctl${ctlFlags} showhostinfo`,
      `  npx balloonctl${ctlFlags} showvminfo vm-small`,
      `  npx balloonctl${ctlFlags} metrics query vm-large Guest/RAM/Usage`,
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );

  // Running: a host that dies ends the demo (a guest that dies is the host's to report).
  const hostCode = await host.exited;
  if (!stopping) {
    await shutdown('the host exited');
    throw new DemoError(`the host exited (code ${hostCode}); its log (${shown(host.logFile)}) ends:\n${lastLines(host.logFile)}`);
  }
}

function describeExit(code: number | 'killed'): string {
  if (code === 'killed') return `did not stop within ${STOP_TIMEOUT_MS / 1000} s: killed`;
  return code === 0 ? 'stopped' : `stopped with exit code ${code}`;
}

main().catch((err: unknown) => {
  const message = err instanceof DemoError ? err.message : err instanceof Error ? `unexpected error: ${err.message}` : String(err);
  process.stderr.write(`memballoon demo: ${message}\n`);
  process.exit(1);
});
