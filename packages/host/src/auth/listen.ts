// Which addresses the host may listen on, given TLS and authentication: a
// pure rule, so that the CLI and embedders get the same answer.
import { isLoopback } from './tokens.js';

/** The answer of listenProblem: an error refuses the start, a warning is logged. */
export interface ListenVerdict {
  error?: string;
  warning?: string;
}

/**
 * Loopback is always fine. Another address needs tokens (no-auth is refused
 * outright there) and TLS, unless `allowInsecure` says plaintext is meant
 * (then a warning: tokens travel in clear text).
 */
export function listenProblem(host: string, opts: { tls: boolean; noAuth: boolean; allowInsecure: boolean }): ListenVerdict {
  if (isLoopback(host)) return {};
  if (opts.noAuth) {
    return { error: `--insecure-no-auth serves loopback addresses only, not '${host}': anyone who can reach it could drive every balloon` };
  }
  if (!opts.tls) {
    if (!opts.allowInsecure) {
      return { error: `listening on '${host}' (not loopback) needs --tls-cert and --tls-key, or --allow-insecure-listen to send tokens in clear text` };
    }
    return { warning: `listening on '${host}' without TLS: guest and admin tokens cross the network in clear text` };
  }
  return {};
}
