// The configuration of balloonctl: global flags and the environment become
// one frozen object. The only place of the balloonctl process that reads
// process.env.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readAdminToken } from '../auth/tokens.js';

/** Where balloonctl finds the host when neither --host nor MEMBALLOON_URL says. */
export const DEFAULT_HOST_URL = 'http://127.0.0.1:7450';

/** balloonctl's settings and the command's words. */
export interface CtlConfig {
  hostUrl: string;
  /** The admin token: --admin-token, MEMBALLOON_ADMIN_TOKEN, or <data-dir>/admin.token; undefined if none. */
  adminToken: string | undefined;
  json: boolean;
  /** The command and its arguments, global flags removed. */
  args: readonly string[];
  /** Whether stdout is a terminal (progress bars instead of lines). */
  tty: boolean;
}

/** Takes --host URL and --json out of argv (anywhere), falls back to MEMBALLOON_URL. */
export function loadCtlConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, tty = Boolean(process.stdout.isTTY)): Readonly<CtlConfig> {
  const args: string[] = [];
  let hostUrl: string | undefined;
  let json = false;
  let adminToken: string | undefined;
  let dataDir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    // After `--` comes startvm's command: its flags are its own.
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    if (a === '--host') {
      hostUrl = argv[++i];
      if (hostUrl === undefined) throw new Error('--host needs a URL, e.g. http://127.0.0.1:7450');
    } else if (a.startsWith('--host=')) hostUrl = a.slice('--host='.length);
    else if (a === '--admin-token' || a === '--data-dir') {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      if (a === '--admin-token') adminToken = v;
      else dataDir = v;
    } else if (a.startsWith('--admin-token=')) adminToken = a.slice('--admin-token='.length);
    else if (a.startsWith('--data-dir=')) dataDir = a.slice('--data-dir='.length);
    else if (a === '--json') json = true;
    else args.push(a);
  }
  const url = (hostUrl ?? env.MEMBALLOON_URL ?? DEFAULT_HOST_URL).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(url)) throw new Error(`the host URL '${url}' must start with http:// or https://`);
  // The same default data directory as balloon-host's, so that on one machine it just works.
  const dir = dataDir || env.MEMBALLOON_DATA_DIR || join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'memballoon');
  const token = adminToken || env.MEMBALLOON_ADMIN_TOKEN || readAdminToken(dir);
  return Object.freeze({ hostUrl: url, adminToken: token, json, args: Object.freeze(args), tty });
}
