// balloon-agent: the CLI face of the agent. It makes the process's one
// logger, turns flags into the config, runs a wrapped workload if asked, and
// turns SIGINT/SIGTERM into deflate, Goodbye and exit 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { pino } from 'pino';
import { startAgent, type AgentHandle } from '../agent.js';
import { createPageFusion, type PageFusion } from '../fusion/index.js';
import { AgentError } from '../errors.js';
import { loadConfig, USAGE, workloadEnv, type AgentConfig } from './config.js';

function fail(message: string, exitCode = 2): never {
  process.stderr.write(`balloon-agent: ${message}\n`);
  process.exit(exitCode);
}

let config: AgentConfig;
try {
  config = loadConfig(process.argv.slice(2), process.env, Boolean(process.stderr.isTTY));
} catch (err) {
  fail(`${AgentError.from(err).message}\n${USAGE}`);
}
if (config.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

// Logs go to stderr so that a wrapped workload owns stdout.
const logOptions = { name: 'balloon-agent', level: config.logLevel, base: { pid: process.pid, vm: config.name } };
// pino-pretty is loaded only when asked for: it costs start-up time otherwise.
const log = config.logPretty
  ? pino(logOptions, (await import('pino-pretty')).default({ destination: 2, colorize: Boolean(process.stderr.isTTY), sync: true }))
  : pino(logOptions, pino.destination(2));

let child: ChildProcess | null = null;
let childExit: Promise<number> = new Promise(() => {});
if (config.command.length > 0) {
  // Started before the agent lowers its own oom_score_adj, so the workload
  // keeps the ordinary score.
  const [cmd, ...args] = config.command as [string, ...string[]];
  child = spawn(cmd, args, { stdio: 'inherit', env: workloadEnv(process.env) });
  childExit = new Promise((resolve) => {
    child!.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (signalNumber(signal) ?? 1) : 1)));
    child!.on('error', (err) => {
      log.error({ err }, `could not run ${cmd}`);
      resolve(127);
    });
  });
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return (osConstants.signals as Record<string, number>)[signal];
}

let agent: AgentHandle;
let fusion: PageFusion;
try {
  // The shared files are loaded (and hashed) before the first Hello, so the
  // first Welcome already finds them; the agent keeps them, as the guest
  // application that mapped them would.
  fusion = await createPageFusion({
    onMergeState: (st, pageFusion) => {
      if (st.regions === 0) return;
      if (st.detail) log.warn({ mergeableRegions: st.mergeableRegions, regions: st.regions }, `page fusion: regions not marked mergeable: ${st.detail}`);
      else
        log.info(
          { mergeable: pageFusion, regions: st.regions },
          pageFusion ? 'page fusion on: shared regions marked mergeable' : 'page fusion off for this VM: shared regions hinted only',
        );
    },
  });
  for (const path of config.shareFiles) {
    const region = fusion.shareFile(path);
    log.info({ path, region: region.name, sizeBytes: region.sizeBytes, pages: region.pageCount }, 'shared file loaded for page fusion');
  }
  agent = await startAgent({
    host: config.host,
    name: config.name,
    token: config.token,
    // --ca-file (or MEMBALLOON_CA_FILE) wins over the PEM text a host passed.
    ...(config.caFile !== undefined ? { ca: readFileSync(config.caFile) } : config.caPem !== undefined ? { ca: Buffer.from(config.caPem) } : {}),
    ...(config.memoryMib !== undefined ? { memoryMib: config.memoryMib } : {}),
    chunkMib: config.chunkMib,
    ...(config.floorMib > 0 ? { floorMib: config.floorMib } : {}),
    lock: config.lock,
    domain: config.domain,
    wrapped: child !== null,
    logger: log,
    // What a library leaves alone, the command does: the balloon makes this
    // process the largest, the OOM killer's first pick; and large
    // allocations of the rest of the process should return to the kernel.
    oomScoreAdj: -500,
    tuneMalloc: true,
    fusion: fusion.plugin,
  });
} catch (err) {
  child?.kill('SIGTERM');
  fail(AgentError.from(err).message);
}

let exiting = false;
async function exit(code: number, why: string): Promise<void> {
  if (exiting) return;
  exiting = true;
  log.info({ exitCode: code }, why);
  await agent.close();
  log.flush();
  process.exit(code);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    // A second signal while deflating means "now": leave at once.
    if (exiting) process.exit(1);
    if (child && child.exitCode === null) child.kill(signal);
    void exit(0, `${signal}: deflating and saying goodbye`);
  });
}

void childExit.then((code) => exit(code, `the workload exited with ${code}`));
void agent.stopped.then((err) => {
  if (err) {
    child?.kill('SIGTERM');
    process.stderr.write(`balloon-agent: ${err.message}\n`);
    void exit(1, 'refused by the host');
  }
});
