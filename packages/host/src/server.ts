// startHost: the whole host service in-process (the balloon-host CLI, tests
// and embedders use it): registry, service, one HTTP server carrying the admin
// API, the guests' WebSocket endpoint, /metrics and the dashboard.
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { GUEST_PATH, GUEST_SUBPROTOCOL } from '@memballoon/protocol';
import { createRouter, type RouterMounts } from './api/router.js';
import { listenProblem } from './auth/listen.js';
import { ensureAdminToken, hashToken } from './auth/tokens.js';
import { createDashboard } from './dashboard/index.js';
import { HostFusion, type HostFusionOptions } from './fusion/index.js';
import { HostError } from './errors.js';
import { HostMetrics, queryMetrics } from './metrics/index.js';
import { Registry } from './registry/registry.js';
import { HostService, type HostServiceOptions } from './service/host-service.js';
import { startPolicyLoop } from './service/policy-loop.js';
import { DEFAULT_SESSION_LIMITS, RateLimiter, type SessionLimits } from './session/limits.js';
import { runGuestSession, type GuestFrameHooks } from './session/guest-session.js';

/** Options of startHost. */
export interface StartHostOptions {
  /** Address to listen on (default 127.0.0.1). */
  listenHost?: string;
  /** Port (default 7450; 0 picks a free one). */
  listenPort?: number;
  /** Where the registry lives. */
  dataDir: string;
  /** The pool size P in MiB. */
  poolSizeMib: number;
  /** Register unknown VMs with the memory their guest reports. */
  autoRegister?: boolean;
  /** The process's logger (default: silent; a library never logs on its own). */
  logger?: Logger;
  /** Per-connection limits (defaults: DEFAULT_SESSION_LIMITS). */
  limits?: Partial<SessionLimits>;
  /** How long a start or deflate waits for others to inflate (default 20 s). */
  reclaimTimeoutMs?: number;
  /** Suggested wait before a refused guest retries (default 5 s). */
  retryAfterMs?: number;
  /** Interval of the automatic balloon policy (default 1000 ms; 0 turns it off). */
  policyIntervalMs?: number;
  /** Pool memory the automatic policy keeps free (default 256 MiB, the engine's). */
  policyMarginMib?: number;
  /** Serve the dashboard at / (default true). */
  dashboard?: boolean;
  /** Page fusion (hint table, KSM controller) options; false turns page fusion off. */
  fusion?: HostFusionOptions | false;
  /** Hooks for page fusion frames (default: the page fusion module's). */
  guestHooks?: GuestFrameHooks;
  /** Serve https/wss with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * The admin token; default: `<dataDir>/admin.token`, created (0600) at the
   * first start.
   */
  adminToken?: string;
  /** No admin token and no guest tokens: loopback addresses only (the demo). */
  insecureNoAuth?: boolean;
  /** Allow a non-loopback address without TLS (a warning is logged). */
  allowInsecureListen?: boolean;
  /** The memory cgroup of each managed guest (the launcher's); with it balloons are handed off to the guests' limits (HostServiceOptions.cgroupOf). */
  cgroupOf?: HostServiceOptions['cgroupOf'];
}

/** A running host. */
export interface HostHandle {
  /** Base URL, e.g. http://127.0.0.1:7450 (agents and balloonctl take it). */
  url: string;
  /** The service, for embedders (snapshot, subscribe, setBalloon, …). */
  service: HostService;
  server: Server;
  /** The admin token (undefined with insecureNoAuth). */
  adminToken: string | undefined;
  /** Ends sessions with Goodbye, closes the server and the registry. */
  close(): Promise<void>;
}

function readVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** Formats a listening address as a base URL. */
export function baseUrlOf(address: AddressInfo, tls = false): string {
  const host = address.family === 'IPv6' || address.address.includes(':') ? `[${address.address}]` : address.address;
  return `${tls ? 'https' : 'http'}://${host}:${address.port}`;
}

/** Starts the host service; resolves once it listens. */
export async function startHost(options: StartHostOptions): Promise<HostHandle> {
  const logger = options.logger ?? pino({ level: 'silent' });
  const limits: SessionLimits = { ...DEFAULT_SESSION_LIMITS, ...options.limits };
  const listenHost = options.listenHost ?? '127.0.0.1';
  const listen = listenProblem(listenHost, { tls: options.tls !== undefined, noAuth: options.insecureNoAuth === true, allowInsecure: options.allowInsecureListen === true });
  if (listen.error) throw new HostError('invalid_argument', listen.error);
  if (listen.warning) logger.warn(listen.warning);
  const adminToken = options.insecureNoAuth ? undefined : (options.adminToken ?? ensureAdminToken(options.dataDir).token);
  const registry = new Registry(options.dataDir);
  let url = '';
  const fusion = options.fusion === false ? undefined : new HostFusion(options.fusion ?? {});
  const service = new HostService({
    registry,
    poolSizeMib: options.poolSizeMib,
    autoRegister: options.autoRegister ?? false,
    guestAuth: options.insecureNoAuth !== true,
    logger,
    facts: {
      version: readVersion(),
      listen: () => url,
      dataDir: options.dataDir,
      ksm: () => fusion?.ksmStatus() ?? { available: false, running: false, detail: 'page fusion is off on this host' },
      sharableMib: fusion && { vm: (name) => fusion.vmSharableMib(name), host: () => fusion.hostSharing().sharableMib },
    },
    reclaimTimeoutMs: options.reclaimTimeoutMs,
    retryAfterMs: options.retryAfterMs,
    ...(options.cgroupOf ? { cgroupOf: options.cgroupOf } : {}),
  });
  const snapshot = () => service.snapshot();
  const metrics = new HostMetrics(snapshot);
  service.setCounters(metrics);
  const mounts: RouterMounts = {
    adminTokenHash: adminToken === undefined ? undefined : hashToken(adminToken),
    onUnauthorized: () => metrics.countRefusal('unauthorized'),
    metrics: { contentType: metrics.contentType, render: () => metrics.render(), query: (vm, metric) => queryMetrics(snapshot(), vm, metric) },
  };
  if (options.dashboard !== false) mounts.dashboard = createDashboard({ snapshot, subscribe: (l) => service.subscribe(l) });

  const handler = createRouter(service, mounts);
  const server: Server = options.tls ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createServer(handler);
  // Slow or idle clients must not hold sockets for ever (a flood of half-open handshakes).
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxPayloadBytes,
    // Pick our subprotocol if offered; without it the session refuses the
    // guest with a protocol Error (clearer than a failed handshake).
    handleProtocols: (protocols) => (protocols.has(GUEST_SUBPROTOCOL) ? GUEST_SUBPROTOCOL : false),
  });
  let pendingHellos = 0;
  const errorLogs = new RateLimiter(limits.maxErrorLogsPerSecond, Date.now());
  const mayLog = () => errorLogs.take(Date.now());
  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://host.invalid').pathname;
    if (path !== GUEST_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    // Sockets that have not said Hello yet are strangers: only so many at once.
    if (pendingHellos >= limits.maxPendingConnections) {
      metrics.countProtocolError('rate_limited');
      socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      // Counted once the handshake succeeded: a failed one never calls back.
      pendingHellos++;
      runGuestSession(ws, service, limits, logger.child({ remote: req.socket.remoteAddress }), options.guestHooks ?? fusion?.hooks, (code) => metrics.countProtocolError(code), () => pendingHellos--, mayLog);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 7450, listenHost, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err) => {
    registry.close();
    throw err;
  });
  url = baseUrlOf(server.address() as AddressInfo, options.tls !== undefined);
  fusion?.start(() => service.listVms(false).map((v) => ({ name: v.name, state: v.state, pageFusion: v.pageFusion, sharedMib: v.sharedMib })));
  const stopPolicy = (options.policyIntervalMs ?? 1000) > 0 ? startPolicyLoop(service, logger, options.policyIntervalMs ?? 1000, options.policyMarginMib === undefined ? {} : { safetyMarginMib: options.policyMarginMib }) : () => {};

  let closing: Promise<void> | undefined;
  return {
    url,
    service,
    server,
    adminToken,
    close() {
      closing ??= (async () => {
        stopPolicy();
        service.close();
        fusion?.close();
        mounts.dashboard?.close?.();
        // Give the guests a moment to read their Goodbye before cutting them off.
        const deadline = Date.now() + 1000;
        while (wss.clients.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        registry.close();
      })();
      return closing;
    },
  };
}
