// The configuration of balloon-host: flags and environment become one frozen
// object. This is the only place of the host process that reads process.env.
import { totalmem } from 'node:os';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { MAX_MEMORY_MIB, BYTES_PER_MIB } from '@memballoon/protocol';
import { hostRecordDir } from './cli/host-record.js';
import { HostError } from './errors.js';

/** Everything balloon-host needs to start. */
export interface HostConfig {
  listenHost: string;
  listenPort: number;
  dataDir: string;
  poolSizeMib: number;
  autoRegister: boolean;
  logLevel: string;
  /** Human-readable logs (pino-pretty) instead of JSON lines. */
  logPretty: boolean;
  /** Interval of the automatic balloon policy, 0 to turn it off. */
  policyIntervalMs: number;
  /** Pool memory the automatic policy keeps free (its safety margin). */
  policyMarginMib: number;
  /** PEM files of the certificate and key: serve https/wss. */
  tlsCertPath: string | undefined;
  tlsKeyPath: string | undefined;
  /** No admin or guest tokens (loopback only; the demo). */
  insecureNoAuth: boolean;
  /** Listen on a non-loopback address without TLS (with a warning). */
  allowInsecureListen: boolean;
  /** The parent memory cgroup of the guests startvm runs, relative to the hierarchy. */
  cgroupParent: string;
  /** The parent cgroup's hard limit is the pool. */
  poolCgroup: boolean;
  /** Run guests as plain process trees even where memory cgroups work. */
  noCgroups: boolean;
  /** Run every guest startvm starts as this user. */
  guestUser: string | undefined;
  /** Accept startvm from non-loopback clients. */
  remoteStartvm: boolean;
  /** SIGTERM → SIGKILL grace of poweroff. */
  poweroffGraceMs: number;
  /** PATH of the guests (the host's own). */
  guestPath: string;
  /** NODE_OPTIONS passed on to the agents startvm runs. */
  agentNodeOptions: string | undefined;
  /** Where the host records its URL and data directory for balloonctl (cli/host-record.ts). */
  runtimeDir: string;
  help: boolean;
}

/** The default address, as DESIGN.md says. */
export const DEFAULT_LISTEN = '127.0.0.1:7450';

/** Usage text of balloon-host. */
export const HOST_USAGE = `Usage: balloon-host [--listen HOST:PORT] [--data-dir DIR] [--pool-mib MIB] [--auto-register]
                    [--log-level LEVEL] [--log-pretty] [--policy-interval-ms MS]
                    [--policy-margin-mib MIB]
                    [--cgroup-parent NAME] [--pool-cgroup] [--no-cgroups] [--guest-user USER]
                    [--no-remote-startvm] [--poweroff-grace-ms MS]

  --listen HOST:PORT   where to serve guests, the admin API and the dashboard
                       (default ${DEFAULT_LISTEN}; port 0 picks a free one)   env MEMBALLOON_LISTEN
  --data-dir DIR       where the VM registry lives
                       (default $XDG_DATA_HOME/memballoon or ~/.local/share/memballoon)  env MEMBALLOON_DATA_DIR
  --pool-mib MIB       memory the host may hand to guests (default: RAM minus a reserve)  env MEMBALLOON_POOL_MIB
  --auto-register      register unknown VMs with the memory their guest reports  env MEMBALLOON_AUTO_REGISTER=1
  --log-level LEVEL    pino level (default info)   env MEMBALLOON_LOG_LEVEL
  --log-pretty         human-readable logs (default when stdout is a terminal)  env MEMBALLOON_LOG_PRETTY=1
  --policy-interval-ms MS  automatic balloon policy interval (default 1000, 0: off)  env MEMBALLOON_POLICY_INTERVAL_MS
  --policy-margin-mib MIB  pool memory the automatic policy keeps free (default 256)  env MEMBALLOON_POLICY_MARGIN_MIB
  --tls-cert FILE --tls-key FILE  serve https/wss (PEM)   env MEMBALLOON_TLS_CERT, MEMBALLOON_TLS_KEY
  --insecure-no-auth   no admin token, no guest tokens; loopback addresses only (demo)
  --allow-insecure-listen  allow a non-loopback address without TLS (tokens in clear text)
  --cgroup-parent NAME the memory cgroup that holds the guests startvm runs, one child
                       per VM (default memballoon)   env MEMBALLOON_CGROUP_PARENT
  --pool-cgroup        the parent cgroup's hard limit is the pool: the kernel holds the guests to it
  --no-cgroups         run startvm's guests as plain process trees
  --guest-user USER    run every guest startvm starts as USER (a request may not name another)
  --no-remote-startvm  refuse startvm unless balloonctl runs on this machine (loopback)
  --poweroff-grace-ms MS  SIGTERM → SIGKILL grace of controlvm poweroff (default 10000)
  --version            print the version and exit

Security: the admin API needs the token in <data-dir>/admin.token (made at the
first start, mode 0600); each VM's agent needs the token createvm printed.`;

/**
 * The default pool: the machine's RAM minus a reserve for the host itself
 * (the larger of 512 MiB and 20 %), so the demo overcommits a real machine
 * without starving it.
 */
export function defaultPoolSizeMib(totalMib: number): number {
  return Math.max(0, Math.floor(totalMib - Math.max(512, totalMib * 0.2)));
}

/** Splits HOST:PORT (IPv6 in brackets); invalid_argument if it is not one. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new HostError('invalid_argument', `--listen '${value}' is not HOST:PORT (e.g. ${DEFAULT_LISTEN}, or 127.0.0.1:0)`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** pino's level names: any other one made pino throw at start-up, a stack trace instead of a usage error. */
const LOG_LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

function parseLogLevel(value: string): string {
  if (!LOG_LEVELS.includes(value)) throw new HostError('invalid_argument', `--log-level must be one of ${LOG_LEVELS.join(', ')} (got '${value}')`);
  return value;
}

function parseBool(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value);
}

function parseInteger(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new HostError('invalid_argument', `${flag} must be a whole number from ${min} to ${max} (got '${value}')`);
  }
  return n;
}

/** Reads flags and environment into the frozen HostConfig; throws HostError(invalid_argument) on nonsense. */
export function loadHostConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, isTty = Boolean(process.stdout.isTTY)): Readonly<HostConfig> {
  const flags = new Map<string, string | true>();
  const valued = new Set([
    '--listen',
    '--data-dir',
    '--pool-mib',
    '--log-level',
    '--policy-interval-ms',
    '--policy-margin-mib',
    '--tls-cert',
    '--tls-key',
    '--cgroup-parent',
    '--guest-user',
    '--poweroff-grace-ms',
  ]);
  const bools = new Set([
    '--auto-register',
    '--log-pretty',
    '--help',
    '-h',
    '--insecure-no-auth',
    '--allow-insecure-listen',
    '--pool-cgroup',
    '--no-cgroups',
    '--no-remote-startvm',
  ]);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (valued.has(name)) {
      const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new HostError('invalid_argument', `${name} needs a value`);
      flags.set(name, value);
    } else if (bools.has(name)) {
      flags.set(name, true);
    } else {
      throw new HostError('invalid_argument', `unknown argument '${arg}' (see balloon-host --help)`);
    }
  }
  const str = (flag: string, envName: string): string | undefined => {
    const v = flags.get(flag);
    return typeof v === 'string' ? v : env[envName];
  };
  const listen = parseListen(str('--listen', 'MEMBALLOON_LISTEN') ?? DEFAULT_LISTEN);
  const dataHome = env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  const poolText = str('--pool-mib', 'MEMBALLOON_POOL_MIB');
  const config: HostConfig = {
    listenHost: listen.host,
    listenPort: listen.port,
    dataDir: str('--data-dir', 'MEMBALLOON_DATA_DIR') ?? join(dataHome, 'memballoon'),
    poolSizeMib: poolText === undefined ? defaultPoolSizeMib(Math.floor(totalmem() / BYTES_PER_MIB)) : parseInteger(poolText, '--pool-mib', 0, MAX_MEMORY_MIB),
    autoRegister: flags.get('--auto-register') === true || parseBool(env.MEMBALLOON_AUTO_REGISTER),
    logLevel: parseLogLevel(str('--log-level', 'MEMBALLOON_LOG_LEVEL') ?? 'info'),
    logPretty: flags.get('--log-pretty') === true || parseBool(env.MEMBALLOON_LOG_PRETTY) || isTty,
    policyIntervalMs: parseInteger(str('--policy-interval-ms', 'MEMBALLOON_POLICY_INTERVAL_MS') ?? '1000', '--policy-interval-ms', 0, 3_600_000),
    policyMarginMib: parseInteger(str('--policy-margin-mib', 'MEMBALLOON_POLICY_MARGIN_MIB') ?? '256', '--policy-margin-mib', 0, MAX_MEMORY_MIB),
    tlsCertPath: str('--tls-cert', 'MEMBALLOON_TLS_CERT'),
    tlsKeyPath: str('--tls-key', 'MEMBALLOON_TLS_KEY'),
    insecureNoAuth: flags.get('--insecure-no-auth') === true,
    allowInsecureListen: flags.get('--allow-insecure-listen') === true,
    cgroupParent: str('--cgroup-parent', 'MEMBALLOON_CGROUP_PARENT') ?? 'memballoon',
    poolCgroup: flags.get('--pool-cgroup') === true,
    noCgroups: flags.get('--no-cgroups') === true,
    guestUser: str('--guest-user', 'MEMBALLOON_GUEST_USER'),
    remoteStartvm: flags.get('--no-remote-startvm') !== true,
    poweroffGraceMs: parseInteger(str('--poweroff-grace-ms', 'MEMBALLOON_POWEROFF_GRACE_MS') ?? '10000', '--poweroff-grace-ms', 0, 3_600_000),
    guestPath: env.PATH || '/usr/local/bin:/usr/bin:/bin',
    agentNodeOptions: env.NODE_OPTIONS || undefined,
    runtimeDir: hostRecordDir(env),
    help: flags.has('--help') || flags.has('-h'),
  };
  if (config.poolCgroup && config.noCgroups) throw new HostError('invalid_argument', '--pool-cgroup and --no-cgroups contradict each other');
  if ((config.tlsCertPath === undefined) !== (config.tlsKeyPath === undefined)) {
    throw new HostError('invalid_argument', '--tls-cert and --tls-key go together');
  }
  return Object.freeze(config);
}
