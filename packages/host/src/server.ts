// startHost: the whole host service in-process (the balloon-host CLI, tests
// and embedders use it): registry, service, one HTTP server carrying the admin
// API, the guests' WebSocket endpoint, /metrics and the dashboard.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { GUEST_PATH, GUEST_SUBPROTOCOL } from '@memballoon/protocol';
import { createRouter, type RouterMounts } from './api/router.js';
import { listenProblem } from './auth/listen.js';
import { ensurePrivateDir } from './auth/private-files.js';
import { ensureAdminToken, ensureReadonlyToken, hashToken } from './auth/tokens.js';
import { createDashboard } from './dashboard/index.js';
import { HostFusion, type HostFusionOptions } from './fusion/index.js';
import { HostError } from './errors.js';
import { HostMetrics, queryMetrics } from './metrics/index.js';
import { Registry } from './registry/registry.js';
import { HostService, type HostServiceOptions } from './service/host-service.js';
import { DEFAULT_CGROUP_PARENT } from './cgroup/index.js';
import { GuestLauncher } from './guests/launcher.js';
import { handOffWhileInflatingByDefault } from './handoff/plan.js';
import { startPolicyLoop } from './service/policy-loop.js';
import { DEFAULT_SESSION_LIMITS, type SessionLimits } from './session/limits.js';
import { GuestSession, type GuestFrameHooks } from './session/guest-session.js';
import { LogBudget } from './session/log-budget.js';
import { PendingConnections } from './session/pending.js';

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
  /**
   * The read-only token (metrics, the API's GETs, a view-only dashboard);
   * default: `<dataDir>/readonly.token`, created (0600) beside the admin token.
   */
  readonlyToken?: string;
  /** No admin token and no guest tokens: loopback addresses only (the demo). */
  insecureNoAuth?: boolean;
  /** Allow a non-loopback address without TLS (a warning is logged). */
  allowInsecureListen?: boolean;
  /** Guests the host starts (startvm) and owns; absent: no startvm (a library host only counts). */
  guests?: HostGuestsOptions;
  /** The memory cgroup of each managed guest, for embedders with a launcher of their own (default: the guests option's); balloons are handed off to these limits. */
  cgroupOf?: HostServiceOptions['cgroupOf'];
  /** Hand off while a balloon still inflates; false waits for the settle (the hand-off benchmark runs both). Default: on 2 cores or more (handOffWhileInflatingByDefault). */
  handOffWhileInflating?: boolean;
}

/** Options of the host's managed guests (../guests, ../cgroup). */
export interface HostGuestsOptions {
  /** The parent cgroup, relative to the memory hierarchy (default DEFAULT_CGROUP_PARENT). */
  cgroupParent?: string;
  /** Make the parent's hard limit the pool. */
  poolCgroup?: boolean;
  /** PATH of the guests (and where their command is looked up). */
  pathEnv: string;
  /** NODE_OPTIONS for the agents. */
  nodeOptions?: string;
  /** How to run balloon-agent (default: this node and the guest-agent package's bin). */
  agentCommand?: string[];
  /** Run every guest as this user. */
  guestUser?: string;
  /** Accept startvm from non-loopback clients (default true). */
  remoteStartvm?: boolean;
  /** SIGTERM → SIGKILL grace of poweroff (default 10 s). */
  poweroffGraceMs?: number;
  /** How long startvm waits for the agent's Hello (default 60 s). */
  startTimeoutMs?: number;
  /** Plain process trees even where memory cgroups work. */
  forceProcessMode?: boolean;
}

/** The agent's command: this node running the guest-agent package's bin. */
export function defaultAgentCommand(): string[] {
  return [process.execPath, createRequire(import.meta.url).resolve('@memballoon/guest-agent/bin/balloon-agent.mjs')];
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
  /** The read-only token (undefined with insecureNoAuth). */
  readonlyToken: string | undefined;
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
  const listen = listenProblem(listenHost, {
    tls: options.tls !== undefined,
    noAuth: options.insecureNoAuth === true,
    allowInsecure: options.allowInsecureListen === true,
  });
  if (listen.error) throw new HostError('invalid_argument', listen.error);
  if (listen.warning) logger.warn(listen.warning);
  // The data directory first (ours, closed to others), then the registry (a
  // damaged one stops the host), then the admin token, which a first start
  // makes only after the registry (see registryIsFresh).
  ensurePrivateDir(options.dataDir);
  const registry = new Registry(options.dataDir);
  let adminToken: string | undefined;
  let readonlyToken: string | undefined;
  try {
    adminToken = options.insecureNoAuth ? undefined : (options.adminToken ?? ensureAdminToken(options.dataDir).token);
    readonlyToken = options.insecureNoAuth ? undefined : (options.readonlyToken ?? ensureReadonlyToken(options.dataDir).token);
  } catch (err) {
    registry.close();
    throw err;
  }
  let url = '';
  const fusion = options.fusion === false ? undefined : new HostFusion(options.fusion ?? {});
  let guests: GuestLauncher | undefined;
  if (options.guests) {
    const g = options.guests;
    // The agents it starts must trust the host's certificate (handed over in their environment).
    const caPem = options.tls ? options.tls.cert.toString() : undefined;
    try {
      guests = await GuestLauncher.open({
        dataDir: options.dataDir,
        logger,
        cgroupParent: g.cgroupParent ?? DEFAULT_CGROUP_PARENT,
        poolCgroup: g.poolCgroup ?? false,
        poolSizeMib: options.poolSizeMib,
        agentCommand: g.agentCommand ?? defaultAgentCommand(),
        pathEnv: g.pathEnv,
        ...(g.nodeOptions !== undefined ? { nodeOptions: g.nodeOptions } : {}),
        hostUrl: () => url,
        ...(caPem !== undefined ? { caPem } : {}),
        ...(g.guestUser !== undefined ? { guestUser: g.guestUser } : {}),
        remoteStartvm: g.remoteStartvm ?? true,
        ...(g.poweroffGraceMs !== undefined ? { poweroffGraceMs: g.poweroffGraceMs } : {}),
        ...(g.startTimeoutMs !== undefined ? { startTimeoutMs: g.startTimeoutMs } : {}),
        forceProcessMode: g.forceProcessMode ?? false,
        adoptions: registry,
      });
    } catch (err) {
      registry.close();
      throw err;
    }
  }
  const service = new HostService({
    handOffWhileInflating: options.handOffWhileInflating ?? handOffWhileInflatingByDefault(availableParallelism()),
    guests,
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
  guests?.attach(service);
  const snapshot = () => service.snapshot();
  const metrics = new HostMetrics(snapshot);
  service.setCounters(metrics);
  const mounts: RouterMounts = {
    adminTokenHash: adminToken === undefined ? undefined : hashToken(adminToken),
    ...(guests ? { guests } : {}),
    readonlyTokenHash: readonlyToken === undefined ? undefined : hashToken(readonlyToken),
    onUnauthorized: (reason) => metrics.countRefusal(reason),
    logger,
    metrics: { contentType: metrics.contentType, render: () => metrics.render(), query: (vm, metric) => queryMetrics(snapshot(), vm, metric) },
  };
  if (options.dashboard !== false)
    mounts.dashboard = createDashboard({
      snapshot,
      subscribe: (l) => service.subscribe(l),
      historySource: (visit) => service.forEachBalloonSample(visit),
    });

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
  // Sockets that have not said Hello yet are strangers: only so many at once,
  // and at the cap the oldest stranger of the busiest address makes room.
  const pending = new PendingConnections(limits.maxPendingConnections);
  // Every line a guest can cause is charged to one host-wide budget.
  const guestLogs = new LogBudget(limits.maxGuestLogLinesPerSecond, limits.guestLogBurstLines, logger);
  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://host.invalid').pathname;
    if (path !== GUEST_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      // Counted once the handshake succeeded: a failed one never calls back.
      const address = req.socket.remoteAddress ?? 'unknown';
      let session: GuestSession | undefined;
      const release = pending.add(address, () => (session ? session.evict() : ws.terminate()));
      session = new GuestSession(ws, {
        service,
        limits,
        logger: guestLogs.wrap(logger, { remote: address }),
        hooks: options.guestHooks ?? fusion?.hooks,
        countProtocolError: (code) => metrics.countProtocolError(code),
        helloDone: release,
      });
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
  fusion?.start(() => service.runningPageFusionVms().map((v) => ({ name: v.name, state: 'running' as const, pageFusion: true, sharedMib: v.sharedMib })));
  const stopPolicy =
    (options.policyIntervalMs ?? 1000) > 0
      ? startPolicyLoop(
          service,
          logger,
          options.policyIntervalMs ?? 1000,
          options.policyMarginMib === undefined ? {} : { safetyMarginMib: options.policyMarginMib },
        )
      : () => {};

  let closing: Promise<void> | undefined;
  return {
    url,
    service,
    server,
    adminToken,
    readonlyToken,
    close() {
      closing ??= (async () => {
        // The guests the host started are powered off while their sessions can still say Goodbye.
        await guests?.close();
        stopPolicy();
        service.close();
        // Adopted cgroups whose sessions just ended get their own limits back.
        await guests?.idle();
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
