// Small HTTP helpers of the admin API: JSON in with a size limit, JSON out,
// and every error as ApiErrorView with the HostError's status.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HostError } from '../errors.js';
import type { ApiErrorView } from '../service/views.js';

/** The response header that tells a client (the dashboard) what its token may do: `admin` or `read-only`. */
export const ACCESS_HEADER = 'x-memballoon-access';

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** Largest JSON body the admin API reads, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Deepest nesting of objects and arrays a body may have. The API's bodies
 * are flat; a value nested thousands deep parses fine but overflows the stack
 * of whatever later formats it (String(), JSON.stringify, a log line), which
 * was a 500. Refused before parsing, as bad input.
 */
export const MAX_JSON_DEPTH = 32;

/** The nesting depth of JSON text, counted without recursion (brackets inside strings do not count). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return deepest;
}

/** Sends a JSON answer (with `headers` beside the usual ones). */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Readonly<Record<string, string>> = {}): void {
  sendJsonText(res, status, JSON.stringify(value), headers);
}

/**
 * Sends JSON text already made (view-json.ts) as an answer. `access` is the
 * x-memballoon-access header for an answer whose route did not set it on
 * `res`: headers passed to writeHead as one flat list, with none set before,
 * are written as they are; one set before makes Node merge them header by
 * header (setHeader and its checks for each), on every PUT of a balloon.
 */
export function sendJsonText(res: ServerResponse, status: number, body: string, headers: Readonly<Record<string, string>> = {}, access?: string): void {
  const length = Buffer.byteLength(body);
  let list: Array<string | number>;
  if (access === undefined) list = ['content-type', JSON_CONTENT_TYPE, 'content-length', length, 'cache-control', 'no-store'];
  else list = [ACCESS_HEADER, access, 'content-type', JSON_CONTENT_TYPE, 'content-length', length, 'cache-control', 'no-store'];
  // Rare (errors: allow, retry-after): as an object, where a later key replaces an earlier one.
  if (Object.keys(headers).length > 0) {
    const merged: Record<string, string | number> = { ...headers };
    for (let i = 0; i < list.length; i += 2) merged[list[i] as string] = list[i + 1]!;
    res.writeHead(status, merged);
  } else res.writeHead(status, list as string[]);
  res.end(body);
}

/** Sends an error as ApiErrorView with its HTTP status (and `headers`, e.g. allow, retry-after). */
export function sendError(res: ServerResponse, err: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const e = HostError.from(err);
  const view: ApiErrorView = { error: { code: e.code, message: e.message } };
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, e.httpStatus, view, headers);
}

/** 405 with the `Allow` header the HTTP spec asks for (set now; sendError keeps headers already set). */
export function methodNotAllowed(res: ServerResponse, method: string, path: string, allow: readonly string[]): HostError {
  res.setHeader('allow', allow.join(', '));
  return new HostError('method_not_allowed', `${method} is not allowed on ${path} (use ${allow.join(' or ')})`);
}

/**
 * Reads a JSON object body (at most MAX_BODY_BYTES); invalid_argument otherwise.
 * With 'data' and 'end' listeners, not `for await`: the async iterator and
 * its promise per chunk were a tenth of the host's time on a PUT.
 */
export function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => readJsonThen(req, (err, body) => (err === undefined ? resolve(body!) : reject(err))));
}

/**
 * readJson with a callback, called once: a route that can answer at once
 * (a balloon PUT) answers from the request's 'end' event, with no promise
 * and no turn of the microtask queue in between.
 */
export function readJsonThen(req: IncomingMessage, done: (err: HostError | undefined, body?: Record<string, unknown>) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  const settle = (err: HostError | undefined, body?: Record<string, unknown>): void => {
    if (settled) return;
    settled = true;
    done(err, body);
  };
  const onData = (chunk: Buffer): void => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      // The rest is not read into memory: the answer says why, and Node
      // discards what is left of the request.
      req.off('data', onData);
      req.off('end', onEnd);
      settle(new HostError('invalid_argument', `the request body is larger than ${MAX_BODY_BYTES} bytes`));
      return;
    }
    chunks.push(chunk);
  };
  const onEnd = (): void => {
    let body: Record<string, unknown>;
    try {
      body = parseJsonObject(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      settle(HostError.from(err));
      return;
    }
    settle(undefined, body);
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', (err) => settle(new HostError('invalid_argument', `the request body could not be read: ${err.message}`, { cause: err })));
}

/** Parses a request body: a JSON object, or {} for an empty body; invalid_argument otherwise. */
function parseJsonObject(text: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw new HostError('invalid_argument', `the request body is nested deeper than ${MAX_JSON_DEPTH} levels`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HostError('invalid_argument', 'the request body is not valid JSON');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new HostError('invalid_argument', 'the request body must be a JSON object');
  return value as Record<string, unknown>;
}
