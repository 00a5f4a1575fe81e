// The configuration of balloonctl: global flags and the environment become
// one frozen object. The only place of the balloonctl process that reads
// process.env.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN_FILE, readAdminToken } from '../auth/tokens.js';
import { HostError } from '../errors.js';
import { findHostRecord, hostRecordDir } from './host-record.js';

/** Where balloonctl finds the host when neither --host nor MEMBALLOON_URL says. */
export const DEFAULT_HOST_URL = 'http://127.0.0.1:7450';

/** Where the admin token came from, and every place looked at (for the error when the host wants one). */
export interface TokenLookup {
  /** The token, or undefined if no place had one. */
  token: string | undefined;
  /** Where it came from ('--admin-token', 'MEMBALLOON_ADMIN_TOKEN' or a file's path). */
  source: string | undefined;
  /** The files looked at, in order (empty when a flag or the environment gave the token). */
  triedFiles: readonly string[];
}

/** balloonctl's settings and the command's words. */
export interface CtlConfig {
  hostUrl: string;
  /** The admin token: --admin-token, MEMBALLOON_ADMIN_TOKEN, or an admin.token file; undefined if none. */
  adminToken: string | undefined;
  /** How the token was found (named in the error when the host refuses). */
  tokenLookup: TokenLookup;
  json: boolean;
  /** --help anywhere: print the usage (of the command, if one is named). */
  help: boolean;
  /** --version. */
  version: boolean;
  /** The command and its arguments, global flags removed. */
  args: readonly string[];
  /** Whether stderr is a terminal (progress redrawn in place instead of one line per change). */
  tty: boolean;
}

/**
 * Takes the global flags out of argv (anywhere): --host URL, --admin-token T,
 * --data-dir DIR, --json, --help/-h, --version. The admin token is, in order:
 * --admin-token, MEMBALLOON_ADMIN_TOKEN, admin.token in --data-dir or
 * MEMBALLOON_DATA_DIR; without those, admin.token in the data directory of
 * the host that listens at the URL (its record, cli/host-record.ts), then in
 * the default data directory.
 */
export function loadCtlConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, tty = Boolean(process.stderr.isTTY)): Readonly<CtlConfig> {
  const args: string[] = [];
  let hostUrl: string | undefined;
  let json = false;
  let help = false;
  let version = false;
  let adminToken: string | undefined;
  let dataDir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    // After `--` comes startvm's command: its flags are its own.
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    if (a === '--host' || a === '--admin-token' || a === '--data-dir') {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--'))
        throw new HostError('usage', `${a === '--host' ? '--host needs a URL, e.g. http://127.0.0.1:7450' : `${a} needs a value`} (see balloonctl --help)`);
      if (a === '--host') hostUrl = v;
      else if (a === '--admin-token') adminToken = v;
      else dataDir = v;
    } else if (a.startsWith('--host=')) hostUrl = a.slice('--host='.length);
    else if (a.startsWith('--admin-token=')) adminToken = a.slice('--admin-token='.length);
    else if (a.startsWith('--data-dir=')) dataDir = a.slice('--data-dir='.length);
    else if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') help = true;
    else if (a === '--version' || a === '-V') version = true;
    else args.push(a);
  }
  const url = (hostUrl || env.MEMBALLOON_URL || DEFAULT_HOST_URL).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(url)) throw new HostError('usage', `the host URL '${url}' must start with http:// or https:// (see balloonctl --help)`);
  const tokenLookup = lookUpToken(url, adminToken, dataDir, env);
  return Object.freeze({ hostUrl: url, adminToken: tokenLookup.token, tokenLookup, json, help, version, args: Object.freeze(args), tty });
}

function lookUpToken(url: string, flagToken: string | undefined, flagDataDir: string | undefined, env: NodeJS.ProcessEnv): TokenLookup {
  if (flagToken) return { token: flagToken, source: '--admin-token', triedFiles: [] };
  if (env.MEMBALLOON_ADMIN_TOKEN) return { token: env.MEMBALLOON_ADMIN_TOKEN, source: 'MEMBALLOON_ADMIN_TOKEN', triedFiles: [] };
  const explicitDir = flagDataDir || env.MEMBALLOON_DATA_DIR;
  const dirs: string[] = [];
  if (explicitDir) dirs.push(explicitDir);
  else {
    const record = findHostRecord(hostRecordDir(env), url);
    if (record) dirs.push(record.dataDir);
    // The same default as balloon-host's, so that on one machine it just works.
    dirs.push(join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'memballoon'));
  }
  const triedFiles: string[] = [];
  for (const dir of new Set(dirs)) {
    const file = join(dir, ADMIN_TOKEN_FILE);
    triedFiles.push(file);
    const token = readAdminToken(dir);
    if (token !== undefined) return { token, source: file, triedFiles };
  }
  return { token: undefined, source: undefined, triedFiles };
}
