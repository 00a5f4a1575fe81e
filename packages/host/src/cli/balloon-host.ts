// balloon-host: starts the host service. The process's one logger is made
// here and passed down. The readiness line ("balloon-host listening" with
// `url`) is what scripts and tests wait for.
import { readFileSync } from 'node:fs';
import pino from 'pino';
import pretty from 'pino-pretty';
import { HOST_USAGE, loadHostConfig, type HostConfig } from '../config.js';
import { HostError } from '../errors.js';
import { startHost } from '../server.js';
import { join, resolve } from 'node:path';
import { ADMIN_TOKEN_FILE, READONLY_TOKEN_FILE } from '../auth/tokens.js';
import { writeHostRecord } from './host-record.js';

function fatal(message: string): never {
  process.stderr.write(`balloon-host: ${message}\n`);
  process.exit(2);
}

let config: Readonly<HostConfig>;
try {
  config = loadHostConfig(process.argv.slice(2));
} catch (err) {
  fatal((err as Error).message);
}
if (config.help) {
  process.stdout.write(`${HOST_USAGE}\n`);
  process.exit(0);
}

// JSON logs go out asynchronously (pino's own exit handler flushes them):
// at 1,000 guests a write(2) per line was a tenth of the host's CPU; written
// asynchronously, the lines that arrive while one write is in flight go out
// together in the next. The price: a kill -9 loses the lines of that last
// write in flight, at most a few milliseconds' worth.
const logger = config.logPretty
  ? pino({ level: config.logLevel }, pretty({ colorize: Boolean(process.stdout.isTTY), sync: true }))
  : pino({ level: config.logLevel }, pino.destination({ dest: 1, sync: false }));

let host: Awaited<ReturnType<typeof startHost>>;
try {
  host = await startHost({
    listenHost: config.listenHost,
    listenPort: config.listenPort,
    dataDir: config.dataDir,
    poolSizeMib: config.poolSizeMib,
    autoRegister: config.autoRegister,
    logger,
    policyIntervalMs: config.policyIntervalMs,
    policyMarginMib: config.policyMarginMib,
    tls: config.tlsCertPath && config.tlsKeyPath ? { cert: readFileSync(config.tlsCertPath), key: readFileSync(config.tlsKeyPath) } : undefined,
    insecureNoAuth: config.insecureNoAuth,
    allowInsecureListen: config.allowInsecureListen,
    guests: {
      cgroupParent: config.cgroupParent,
      poolCgroup: config.poolCgroup,
      forceProcessMode: config.noCgroups,
      pathEnv: config.guestPath,
      ...(config.agentNodeOptions !== undefined ? { nodeOptions: config.agentNodeOptions } : {}),
      ...(config.guestUser !== undefined ? { guestUser: config.guestUser } : {}),
      remoteStartvm: config.remoteStartvm,
      poweroffGraceMs: config.poweroffGraceMs,
    },
  });
} catch (err) {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EADDRINUSE')
    fatal(`${config.listenHost}:${config.listenPort} is already in use (is another balloon-host running? try --listen ${config.listenHost}:0)`);
  if (e.code === 'EACCES') fatal(`not allowed to listen on ${config.listenHost}:${config.listenPort}`);
  fatal(err instanceof HostError ? err.message : `could not start: ${e.message}`);
}
if (config.insecureNoAuth) {
  logger.warn('authentication is OFF (--insecure-no-auth): any local process may drive the balloons; loopback only');
}
logger.info(
  {
    url: host.url,
    poolSizeMib: config.poolSizeMib,
    dataDir: config.dataDir,
    autoRegister: config.autoRegister,
    auth: config.insecureNoAuth ? 'off' : 'tokens',
    adminTokenFile: config.insecureNoAuth ? undefined : join(config.dataDir, ADMIN_TOKEN_FILE),
    readonlyTokenFile: config.insecureNoAuth ? undefined : join(config.dataDir, READONLY_TOKEN_FILE),
  },
  'balloon-host listening',
);

// Tells balloonctl on this machine where this host's data directory (and so
// its admin token) is, so that plain `balloonctl list vms` works after
// `npm start`. Best effort: a host that cannot write it still serves.
let removeRecord = (): void => {};
try {
  removeRecord = writeHostRecord(config.runtimeDir, { url: host.url, dataDir: resolve(config.dataDir), pid: process.pid });
} catch (err) {
  logger.warn({ err, runtimeDir: config.runtimeDir }, 'could not record where this host is: balloonctl will need --data-dir or --admin-token');
}
process.on('exit', () => removeRecord());

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'balloon-host stopping');
  void host.close().then(
    () => process.exit(0),
    (err: unknown) => {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    },
  );
};
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
