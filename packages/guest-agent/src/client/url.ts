// The guest endpoint on the host's base URL (the contract every part shares).
import { AgentError } from '../errors.js';

/** The WebSocket subprotocol of memballoon v1. */
export const GUEST_SUBPROTOCOL = 'memballoon.v1';

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
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/guest`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

/** Close codes 4000 + the wire number of a protocol ErrorCode, as the host uses them. */
export const ERROR_CLOSE_CODE_BASE = 4000;
