// The CLI's one config module: flags and environment become one frozen
// object. process.env is read here and nowhere else in the agent.
import { AgentError } from '../errors.js';
import type { DomainKind } from '../domain/source.js';

/** Log levels the CLI accepts (pino's). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** The agent CLI's configuration. */
export interface AgentConfig {
  readonly host: string;
  readonly name: string;
  readonly token: string;
  /** PEM file of the CA that signed the host's certificate (https hosts with a private CA). */
  readonly caFile: string | undefined;
  /**
   * The CA certificate itself, PEM text (env MEMBALLOON_CA_PEM): how a host
   * that starts the agent (startvm) hands it over, so that a guest running
   * as another user needs no file it may not be able to read.
   */
  readonly caPem: string | undefined;
  /** Files to load into page-aligned memory and hint to the host as shared regions (page fusion). */
  readonly shareFiles: readonly string[];
  readonly memoryMib: number | undefined;
  readonly chunkMib: number;
  readonly floorMib: number;
  readonly lock: boolean;
  readonly domain: DomainKind | 'auto';
  readonly logLevel: (typeof LOG_LEVELS)[number];
  /** Human-readable logs (pino-pretty) instead of JSON lines. */
  readonly logPretty: boolean;
  /** The wrapped workload (`-- COMMAND ARGS`), empty when none. */
  readonly command: readonly string[];
  readonly help: boolean;
}

/** The usage text of `balloon-agent`. */
export const USAGE = `usage: balloon-agent --host URL --name NAME [--token T] [--ca-file PEM] [--memory-mib N] [--chunk-mib N]
                     [--floor-mib N] [--no-lock] [--domain auto|machine|cgroup|process] [--share-file PATH]...
                     [--log-level trace|debug|info|warn|error|silent] [--log-pretty] [-- COMMAND ARGS]
       balloon-agent --version

  --host URL        the host's base URL (http://H:P or https://…); env MEMBALLOON_URL,
                    else http://127.0.0.1:7450
  --name NAME       the VM's name
  --token T         the VM's token (createvm printed it); env MEMBALLOON_TOKEN
  --ca-file PEM     CA certificate that signed the host's (https, self-signed); env MEMBALLOON_CA_FILE,
                    or the PEM text itself in env MEMBALLOON_CA_PEM (what startvm gives its agents)
  --memory-mib N    the VM's memory size (required unless the agent's memory cgroup has a
                    limit, or --domain machine says this whole machine is the VM)
  --chunk-mib N     balloon chunk size (default 1)
  --floor-mib N     free-memory floor (default: the host's, else max(64 MiB, 5 % of the domain))
  --no-lock         do not pin balloon memory (mlock)
  --domain D        how guest memory is measured (default auto)
  --share-file PATH load a file that other guests probably hold too and hint it
                    to the host for page fusion (repeatable)
  --log-level L     log level (default info)
  --log-pretty      human-readable logs (default when stderr is a terminal); env MEMBALLOON_LOG_PRETTY=1
  -- COMMAND ARGS   run a workload as the agent's child; the agent exits with it`;

function positiveInt(flag: string, value: string | undefined, min = 1): number {
  const n = Number(value);
  if (value === undefined || !/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) {
    throw new AgentError('invalid_config', `${flag} needs a whole number${min > 0 ? ` of at least ${min}` : ''}, not '${value ?? ''}'`);
  }
  return n;
}

/** Variables only the agent may see: the workload it wraps does not inherit them (a workload with the VM's token could speak for the VM). */
export const AGENT_ONLY_ENV = ['MEMBALLOON_TOKEN', 'MEMBALLOON_CA_PEM'] as const;

/** The environment of the wrapped workload: the agent's, less its credential. */
export function workloadEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env };
  for (const k of AGENT_ONLY_ENV) delete out[k];
  return out;
}

/**
 * Parses argv (without node and the script) and the environment into a
 * frozen config; `stderrIsTty` makes pretty logs the default.
 */
export function loadConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env, stderrIsTty = false): AgentConfig {
  let host = env.MEMBALLOON_URL || 'http://127.0.0.1:7450';
  let name = '';
  let token = env.MEMBALLOON_TOKEN ?? '';
  let caFile = env.MEMBALLOON_CA_FILE || undefined;
  const caPem = env.MEMBALLOON_CA_PEM || undefined;
  if (caPem !== undefined && !caPem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new AgentError('invalid_config', 'MEMBALLOON_CA_PEM must hold a PEM certificate (-----BEGIN CERTIFICATE-----)');
  }
  let memoryMib: number | undefined;
  let chunkMib = 1;
  let floorMib = 0;
  let lock = true;
  let domain: AgentConfig['domain'] = 'auto';
  let logLevel: AgentConfig['logLevel'] = 'info';
  let logPretty = stderrIsTty || env.MEMBALLOON_LOG_PRETTY === '1' || env.MEMBALLOON_LOG_PRETTY === 'true';
  let command: string[] = [];
  let help = false;
  const shareFiles: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    if (raw === '--') {
      command = argv.slice(i + 1);
      if (command.length === 0) throw new AgentError('invalid_config', "'--' must be followed by a command");
      break;
    }
    const eq = raw.indexOf('=');
    const flag = raw.startsWith('--') && eq > 0 ? raw.slice(0, eq) : raw;
    const inline = raw.startsWith('--') && eq > 0 ? raw.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new AgentError('invalid_config', `${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--host':
        host = value();
        break;
      case '--name':
        name = value();
        break;
      case '--token':
        token = value();
        break;
      case '--ca-file':
        caFile = value();
        break;
      case '--memory-mib':
        memoryMib = positiveInt(flag, value());
        break;
      case '--chunk-mib':
        chunkMib = positiveInt(flag, value());
        if (chunkMib > 1024) throw new AgentError('invalid_config', '--chunk-mib may be at most 1024');
        break;
      case '--floor-mib':
        floorMib = positiveInt(flag, value(), 0);
        break;
      case '--no-lock':
        lock = false;
        break;
      case '--domain': {
        const d = value();
        if (d !== 'auto' && d !== 'machine' && d !== 'cgroup' && d !== 'process') {
          throw new AgentError('invalid_config', `--domain must be auto, machine, cgroup or process, not '${d}'`);
        }
        domain = d;
        break;
      }
      case '--log-level': {
        const l = value();
        if (!(LOG_LEVELS as readonly string[]).includes(l))
          throw new AgentError('invalid_config', `--log-level must be one of ${LOG_LEVELS.join(', ')}, not '${l}'`);
        logLevel = l as AgentConfig['logLevel'];
        break;
      }
      case '--log-pretty':
        logPretty = true;
        break;
      case '--share-file':
        shareFiles.push(value());
        break;
      case '--help':
      case '-h':
        help = true;
        break;
      default:
        throw new AgentError('invalid_config', `unknown option '${raw}'`);
    }
  }
  if (!help) {
    if (!name) throw new AgentError('invalid_config', '--name NAME is required');
  }
  return Object.freeze({
    host,
    name,
    token,
    caFile,
    caPem,
    shareFiles: Object.freeze(shareFiles),
    memoryMib,
    chunkMib,
    floorMib,
    lock,
    domain,
    logLevel,
    logPretty,
    command: Object.freeze(command),
    help,
  });
}
