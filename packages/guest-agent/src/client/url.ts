// The guest endpoint on the host's base URL. The path, the subprotocol and the
// close codes are the protocol package's (its wire module); this file only
// turns a base URL into the endpoint.
import { GUEST_PATH } from '@memballoon/protocol';
import { AgentError } from '../errors.js';

/** `<base with http→ws, https→wss>/v1/guest`; throws AgentError('invalid_config') for a bad URL. */
export function guestEndpoint(base: string): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch (err) {
    throw new AgentError('invalid_config', `the host URL '${base}' is not a valid URL`, { cause: err });
  }
  const schemes: Record<string, string> = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' };
  const scheme = schemes[url.protocol];
  if (!scheme) throw new AgentError('invalid_config', `the host URL '${base}' must start with http:// or https://`);
  url.protocol = scheme;
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${GUEST_PATH}`;
  url.search = '';
  url.hash = '';
  return url.toString();
}
