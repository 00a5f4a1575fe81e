// The admin API under /api/v1/ (the contract balloonctl and the dashboard
// use), plus the mounts of the dashboard and /metrics. Each route is a thin
// translation from HTTP to one HostService call.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { bearerOf, tokenMatches, TokenVerifier } from '../auth/tokens.js';
import { HostError } from '../errors.js';
import type { HostService } from '../service/host-service.js';
import type { GuestLauncher } from '../guests/launcher.js';
import { ADMIN_ONLY_VM_ACTIONS, routeGuests } from './guest-routes.js';
import { parseCreateVm, parseVmPatchInput } from '../service/vm-settings.js';
import { ACCESS_HEADER, methodNotAllowed, readJson, readJsonThen, sendError, sendJson, sendJsonText } from './http.js';
import { vmViewJson } from '../service/view-json.js';

/** Something mounted on the HTTP server that may serve a request (the dashboard). */
export interface HttpMount {
  /** Serves the request and returns true, or leaves it alone and returns false. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  close?(): void;
}

/** What /metrics and /api/v1/metrics need (HostMetrics and queryMetrics implement it). */
export interface MetricsMount {
  readonly contentType: string;
  render(): Promise<string>;
  /** Rows of `balloonctl metrics query`; throws HostError (not_found, not_running, invalid_argument). */
  query(vmName?: string, metric?: string): unknown;
}

/** The mounts the router offers requests to. */
export interface RouterMounts {
  dashboard?: HttpMount;
  metrics?: MetricsMount;
  /**
   * Hash of the admin token (auth/tokens.ts) every /api/ and /metrics request
   * must carry as `Authorization: Bearer …`; undefined turns the check off
   * (the loopback-only demo mode).
   */
  adminTokenHash?: string;
  /** The guests the host starts and owns (startvm, poweroff, modifyvm --cgroup); absent: those routes answer not_found. */
  guests?: GuestLauncher;
  /**
   * Hash of the read-only token: it reads (GET and HEAD of /metrics and
   * /api/v1/…, the dashboard's event stream included) and changes nothing.
   * Any other method with it is refused `forbidden`, so startvm and any route
   * added later are admin-only unless they only read.
   */
  readonlyTokenHash?: string;
  /** Told of every request refused for a missing or wrong token (`unauthorized`) or a change with the read-only one (`forbidden`). */
  onUnauthorized?: (reason: 'unauthorized' | 'forbidden') => void;
  /** Where every answer of 500 and above is logged, with its stack (default: nowhere). */
  logger?: Logger;
}

export { ACCESS_HEADER } from './http.js';

/** What a request's token may do. */
export type Access = 'admin' | 'read-only';

/** The access a bearer token grants, or undefined for none (pure, for the router and its tests). */
export function accessOf(token: string | undefined, mounts: Pick<RouterMounts, 'adminTokenHash' | 'readonlyTokenHash'>): Access | undefined {
  if (token === undefined) return undefined;
  if (mounts.adminTokenHash !== undefined && tokenMatches(token, mounts.adminTokenHash)) return 'admin';
  if (mounts.readonlyTokenHash !== undefined && tokenMatches(token, mounts.readonlyTokenHash)) return 'read-only';
  return undefined;
}

const API = '/api/v1';

/** Makes the request handler of the host's HTTP server. */
export function createRouter(service: HostService, mounts: RouterMounts): (req: IncomingMessage, res: ServerResponse) => void {
  const admin = mounts.adminTokenHash === undefined ? undefined : new TokenVerifier(mounts.adminTokenHash);
  return (req, res) => {
    const fail = (err: unknown): void => {
      const e = HostError.from(err);
      // A 5xx is the host's fault, never the client's: always worth a line,
      // with the stack of what was thrown (the cause when it was wrapped).
      if (e.httpStatus >= 500) mounts.logger?.error({ err, code: e.code, method: req.method, path: req.url }, `admin request failed: ${e.message}`);
      sendError(res, e);
    };
    try {
      dispatch(service, mounts, admin, req, res, fail);
    } catch (err) {
      fail(err);
    }
  };
}

/**
 * Checks the request's credential, then serves a balloon PUT by itself
 * (synchronously where the target applies at once) or hands the request to
 * `route`. Throws what it refuses; `fail` answers what fails later.
 */
function dispatch(
  service: HostService,
  mounts: RouterMounts,
  admin: TokenVerifier | undefined,
  req: IncomingMessage,
  res: ServerResponse,
  fail: (err: unknown) => void,
): void {
  const url = requestTarget(req.url ?? '/');
  const path = url.pathname;
  const method = req.method ?? 'GET';

  // Everything that reads state needs a token (admin or read-only), and
  // everything that changes it the admin token; only the dashboard's static
  // shell (which holds no data) is open.
  let access: Access | undefined;
  if (mounts.adminTokenHash !== undefined && (path === '/metrics' || path.startsWith('/api/'))) {
    const token = bearerOf(req.headers.authorization);
    // The admin token is checked through its verifier (the last match remembered: no hash per request).
    access = token !== undefined && admin?.matches(token) ? 'admin' : accessOf(token, { readonlyTokenHash: mounts.readonlyTokenHash });
    if (access === undefined) {
      mounts.onUnauthorized?.('unauthorized');
      res.setHeader('www-authenticate', 'Bearer realm="memballoon"');
      throw new HostError(
        'unauthorized',
        token === undefined ? 'the admin API needs `Authorization: Bearer <admin token>` (the token is in <data-dir>/admin.token)' : 'the admin token is wrong',
      );
    }
    if (access === 'read-only' && method !== 'GET' && method !== 'HEAD') {
      mounts.onUnauthorized?.('forbidden');
      throw new HostError('forbidden', `the read-only token may not ${method} ${path}: changes need the admin token`);
    }
  }
  if (method === 'PUT') {
    let name: string | undefined;
    try {
      name = balloonPathVm(path);
    } catch (err) {
      if (access !== undefined) res.setHeader(ACCESS_HEADER, access);
      throw err;
    }
    if (name !== undefined) {
      // In route's order: the dashboard's paths first (none of them is a VM's balloon).
      if (!mounts.dashboard?.handle(req, res)) putBalloon(service, name, req, res, access, fail);
      return;
    }
  }
  if (access !== undefined) res.setHeader(ACCESS_HEADER, access);
  route(service, mounts, req, res, url, path, method).catch(fail);
}

const BALLOON_PATH_PREFIX = `${API}/vms/`;
const BALLOON_PATH_SUFFIX = '/balloon';

/** The VM of `/api/v1/vms/NAME/balloon` (NAME one decoded segment), else undefined; invalid_argument for a bad escape, as route says. */
function balloonPathVm(path: string): string | undefined {
  if (!path.startsWith(BALLOON_PATH_PREFIX) || !path.endsWith(BALLOON_PATH_SUFFIX)) return undefined;
  const segment = path.slice(BALLOON_PATH_PREFIX.length, path.length - BALLOON_PATH_SUFFIX.length);
  if (segment.length === 0 || segment.includes('/')) return undefined;
  return decodePart(segment);
}

/**
 * PUT /api/v1/vms/NAME/balloon: the body is read with listeners and a target
 * that applies at once (no reclaim to wait for) is answered from the body's
 * 'end' event. At 1,000 guests a PUT every 3 ms: an async route, the body's
 * promise and setBalloon's were three promises and their microtask turns
 * per PUT for nothing to wait on. The answer is the VM's view as before,
 * its JSON written by view-json.ts (the same bytes as JSON.stringify).
 */
function putBalloon(
  service: HostService,
  name: string,
  req: IncomingMessage,
  res: ServerResponse,
  access: Access | undefined,
  fail: (err: unknown) => void,
): void {
  const failHere = (err: unknown): void => {
    // The access header goes with every answer past the credential check, errors included.
    if (access !== undefined && !res.headersSent) res.setHeader(ACCESS_HEADER, access);
    fail(err);
  };
  readJsonThen(req, (err, body) => {
    if (err !== undefined) return failHere(err);
    try {
      const targetMib = targetMibOf(body!.targetMib);
      const view = service.setBalloonAtOnce(name, targetMib, 'controlvm');
      if (view !== undefined) sendJsonText(res, 202, vmViewJson(view), undefined, access);
      else
        service
          .setBalloon(name, targetMib, 'controlvm')
          .then((v) => sendJsonText(res, 202, vmViewJson(v), undefined, access))
          // A throw while answering is answered (or the socket destroyed) too, never an unhandled rejection.
          .catch(failHere);
    } catch (e) {
      failHere(e);
    }
  });
}

async function route(
  service: HostService,
  mounts: RouterMounts,
  req: IncomingMessage,
  res: ServerResponse,
  url: RequestTarget,
  path: string,
  method: string,
): Promise<void> {
  if (path === '/metrics' && mounts.metrics) {
    if (method !== 'GET') throw methodNotAllowed(res, method, path, ['GET']);
    const text = await mounts.metrics.render();
    res.writeHead(200, { 'content-type': mounts.metrics.contentType });
    res.end(text);
    return;
  }
  if (mounts.dashboard?.handle(req, res)) return;
  if (!path.startsWith(`${API}/`)) throw new HostError('not_found', `no such path: ${path}`);

  const parts = path.slice(API.length + 1).split('/');
  for (let i = 0; i < parts.length; i++) parts[i] = decodePart(parts[i]!);
  // Indexed, not destructured: destructuring an array runs its iterator, per request.
  const resource = parts[0];
  const name = parts[1];
  const sub = parts[2];
  const extra = parts[3];

  if (resource === 'host' && parts.length === 1) {
    if (method !== 'GET') throw methodNotAllowed(res, method, path, ['GET']);
    return sendJson(res, 200, service.hostView());
  }
  if (resource === 'metrics' && parts.length === 1) {
    if (method !== 'GET') throw methodNotAllowed(res, method, path, ['GET']);
    if (!mounts.metrics) throw new HostError('not_found', 'metrics are not available on this host');
    return sendJson(res, 200, queryMetrics(mounts.metrics, url.searchParams.get('vm') ?? undefined, url.searchParams.get('metric') ?? undefined));
  }
  if (resource === 'vms') {
    if (name === undefined) {
      if (method === 'GET') return sendJson(res, 200, service.listVms(url.searchParams.get('running') === '1' || url.searchParams.get('running') === 'true'));
      if (method === 'POST') {
        const body = await readJson(req);
        return sendJson(res, 201, service.createVm(parseCreateVm({ name: body.name, memoryMib: body.memoryMib })));
      }
      throw methodNotAllowed(res, method, path, ['GET', 'POST']);
    }
    if (sub === undefined) {
      if (method === 'GET') return sendJson(res, 200, service.vmView(name));
      if (method === 'DELETE') {
        service.unregisterVm(name);
        res.writeHead(204).end();
        return;
      }
      if (method === 'PATCH') {
        const body = await readJson(req);
        if (await routeGuests(mounts.guests, service, name, undefined, req, res, body)) return;
        return sendJson(res, 200, service.modifyVm(name, parseVmPatchInput(body)));
      }
      throw methodNotAllowed(res, method, path, ['GET', 'DELETE', 'PATCH']);
    }
    // Only the guest routes' own paths go there: an await per PUT of a balloon was a microtask turn for nothing.
    if (extra === undefined && (ADMIN_ONLY_VM_ACTIONS as readonly string[]).includes(sub) && (await routeGuests(mounts.guests, service, name, sub, req, res)))
      return;
    if (sub === 'balloon' && extra === undefined) {
      if (method !== 'PUT') throw methodNotAllowed(res, method, path, ['PUT']);
      const body = await readJson(req);
      return sendJsonText(res, 202, vmViewJson(await service.setBalloon(name, targetMibOf(body.targetMib), 'controlvm')));
    }
  }
  throw new HostError('not_found', `no such path: ${path}`);
}

/** The path and query of a request, as the router reads them. */
export interface RequestTarget {
  readonly pathname: string;
  readonly searchParams: URLSearchParams;
}

// A path of unreserved characters and %-escapes, with no dot segment (`.`,
// `..`, `%2e`…) and not starting with `//`: URL would give it back unchanged.
const PLAIN_PATH = /^\/(?!\/)[A-Za-z0-9\-._~%/]*$/;
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i;

/**
 * The path and query of a request target, as `new URL(target, base)` reads
 * them. The API's own paths take a shortcut: a URL object per request was a
 * few percent of the host's time at 1,000 guests. Anything else (dot
 * segments, a fragment, characters URL escapes) goes through URL.
 */
export function requestTarget(target: string): RequestTarget {
  const q = target.indexOf('?');
  const pathname = q === -1 ? target : target.slice(0, q);
  if (PLAIN_PATH.test(pathname) && !DOT_SEGMENT.test(pathname) && (q === -1 || !target.includes('#', q))) {
    return new PlainTarget(pathname, q === -1 ? '' : target.slice(q + 1));
  }
  return new URL(target, 'http://host.invalid');
}

/** A plain request target; its query is parsed when asked for (a PUT of a balloon never asks). */
class PlainTarget {
  #searchParams: URLSearchParams | undefined;

  constructor(
    readonly pathname: string,
    private readonly query: string,
  ) {}

  get searchParams(): URLSearchParams {
    this.#searchParams ??= new URLSearchParams(this.query);
    return this.#searchParams;
  }
}

function decodePart(part: string): string {
  // Most segments have nothing to decode (a VM name is [A-Za-z0-9._-]).
  if (!part.includes('%')) return part;
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HostError('invalid_argument', `the path segment '${part}' is not valid URL encoding`);
  }
}

function queryMetrics(metrics: MetricsMount, vm?: string, metric?: string): unknown {
  return metrics.query(vm, metric);
}

/** The balloon size of a PUT body: a number (its range is the service's to check). */
function targetMibOf(value: unknown): number {
  if (typeof value !== 'number') throw new HostError('invalid_argument', `targetMib must be a whole number of MiB (got ${JSON.stringify(value)})`);
  return value;
}
