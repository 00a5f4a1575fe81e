// balloonctl's hints on the admin client's errors: the client (a library too)
// says what failed; the command line knows how it was configured and says
// what to change (its flags, its environment, where it looked for the token).
import { HostError } from '../errors.js';
import type { TokenLookup } from './ctl-config.js';

/** The one line that says why the host refused the admin token, naming where balloonctl looked. */
export function unauthorizedText(baseUrl: string, lookup: TokenLookup, hostMessage: string): string {
  if (lookup.token !== undefined) {
    return `the host at ${baseUrl} refused the admin token from ${lookup.source} (${hostMessage})`;
  }
  const tried = ['--admin-token', 'MEMBALLOON_ADMIN_TOKEN', ...lookup.triedFiles].join(', ');
  return `the host at ${baseUrl} needs the admin token and none was found (tried ${tried}); pass --admin-token T, --data-dir DIR or --host URL of the host that wrote it`;
}

/** The client's error with balloonctl's hints: an unreachable host names --host, a refused token where balloonctl looked. */
export function withCtlHints(err: unknown, baseUrl: string, lookup: TokenLookup): unknown {
  if (!(err instanceof HostError)) return err;
  if (err.code === 'unreachable') return new HostError('unreachable', `${err.message} (--host URL or MEMBALLOON_URL)`, { cause: err });
  if (err.code === 'unauthorized') {
    const hostMessage = err.cause instanceof Error ? err.cause.message : err.message;
    return new HostError('unauthorized', unauthorizedText(baseUrl, lookup, hostMessage), { cause: err });
  }
  return err;
}
