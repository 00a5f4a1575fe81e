// Small HTTP helpers of the admin API: JSON in with a size limit, JSON out,
// and every error as ApiErrorView with the HostError's status.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HostError } from '../errors.js';
import type { ApiErrorView } from '../service/views.js';

/** Largest JSON body the admin API reads, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Sends a JSON answer (with `headers` beside the usual ones). */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
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

/** Reads a JSON object body (at most MAX_BODY_BYTES); invalid_argument otherwise. */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HostError('invalid_argument', `the request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HostError('invalid_argument', 'the request body is not valid JSON');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new HostError('invalid_argument', 'the request body must be a JSON object');
  return value as Record<string, unknown>;
}
