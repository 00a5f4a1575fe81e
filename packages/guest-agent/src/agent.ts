// startAgent: the balloon engine, the guest's memory domain and the session
// with the host, tied together with reconnects. A dropped connection keeps
// the balloon (the host's pool still counts it); the next Hello carries it so
// the host resyncs. Only close() (or a host's final refusal) deflates.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { writeFileSync } from 'node:fs';
import { bodies, FINAL_ERROR_CODES, vmNameProblem, type Body, type BalloonStatus, type ErrorCode, type Hello, type ProtocolError } from '@memballoon/protocol';
import { BalloonEngine } from './balloon/engine.js';
import { availableUnderHandOffBytes } from './balloon/floor.js';
import { openDomain } from './domain/readers.js';
import { processLockedBytes, processRssBytes } from './domain/readers.js';
import type { DomainKind, DomainSource } from './domain/source.js';
import { AgentError } from './errors.js';
import { silentLogger, type AgentLogger } from './logger.js';
import { toMemoryStats } from './stats.js';
import { backoffDelayMs, type BackoffOptions } from './client/backoff.js';
import { GuestSession, type SessionEnd } from './client/session.js';
import { guestEndpoint } from './client/url.js';
import { nativeAvailable } from './native/libc.js';

/**
 * What the host is told is pinned: the engine's count of mlock'ed chunks, but
 * never more than the kernel's VmLck for this process, so a claim of pinned
 * memory is the kernel's word and not only our bookkeeping.
 */
function kernelLockedMib(bookkeptMib: number): number {
  if (bookkeptMib === 0) return 0;
  const kernelMib = Math.floor(processLockedBytes('self') / 2 ** 20);
  return Math.min(bookkeptMib, kernelMib);
}

/** A status with its lockedMib checked against the kernel. */
function kernelChecked(status: BalloonStatus): BalloonStatus {
  return { ...status, lockedMib: kernelLockedMib(status.lockedMib) };
}

/** The agent's version, sent in Hello. */
export const AGENT_VERSION = '0.1.0';

/** Options of startAgent. */
export interface AgentOptions {
  /** The host's base URL (http://H:P or https://…). */
  host: string;
  /** The VM's name. */
  name: string;
  /** Per-VM token ('' or absent: none). */
  token?: string;
  /** CA certificate(s) (PEM) that sign the host's TLS certificate, for self-signed setups; default: the system's CAs. */
  ca?: string | Buffer;
  /** The VM's memory size in MiB (required in the process domain). */
  memoryMib?: number;
  /** Balloon chunk size in MiB (default 1). */
  chunkMib?: number;
  /** Free-memory floor in MiB (default: the host's, else max(64 MiB, 5 % of the domain)). */
  floorMib?: number;
  /** Pin the balloon with mlock (default true). */
  lock?: boolean;
  /** The memory domain: a kind, 'auto' (default), or a source of your own (tests). */
  domain?: DomainKind | 'auto' | DomainSource;
  /** A workload runs as the agent's child (`balloon-agent … -- COMMAND`): picks the process domain. */
  wrapped?: boolean;
  /** The logger (pino or alike); default: silent. */
  logger?: AgentLogger;
  /** oom_score_adj written for this process where allowed (default -500; null: leave it). */
  oomScoreAdj?: number | null;
  /** Reconnect backoff. */
  backoff?: BackoffOptions;
  /** How long to wait for the socket and Welcome, in ms (default 10 000). */
  helloTimeoutMs?: number;
  /** Worker threads for committing pages (default: one per core, at most 4). */
  workerThreads?: number;
  /** Page fusion's side of the session (a FusionLink from ./fusion), told of every Welcome and disconnect. */
  fusion?: SessionPlugin;
}

/** Something that rides along each session (page fusion's FusionLink fits). */
export interface SessionPlugin {
  /** A session was welcomed; `send` sends a frame on it (false when the socket is closed). */
  welcomed(pageFusion: boolean, send: (body: Body) => boolean): unknown;
  /** The session ended. */
  disconnected(): void;
  /** The agent stops. */
  close(): void;
}

/** The connection state of an agent. */
export type AgentConnectionState = 'connecting' | 'connected' | 'waiting' | 'closed';

/** Events of a running agent. */
export interface AgentEvents {
  /** A target from the host was accepted. */
  target: [target: { targetMib: number; generation: number }];
  /** The balloon moved (throttled: every 64 MiB or 100 ms) or settled. */
  progress: [status: BalloonStatus];
  /** The balloon stopped short of its target. */
  shortfall: [status: BalloonStatus];
  /** The host welcomed a session. */
  connected: [info: { sessionId: string; url: string; pageFusion: boolean }];
  /** A session ended; the agent reconnects after `retryInMs` unless it is closing or refused. */
  disconnected: [info: { reason: string; closeCode: number; retryInMs: number | null }];
  /** A problem that did not stop the agent (a refused frame, an Error from the host), or a final refusal. */
  problem: [err: AgentError];
}

/** A running agent. */
export interface AgentHandle {
  /** The agent's process id (what Hello reports). */
  readonly pid: number;
  /** The balloon right now. */
  readonly balloon: BalloonStatus;
  /** The connection state. */
  readonly status: AgentConnectionState;
  /** The current session's id ('' when not connected). */
  readonly sessionId: string;
  /** The memory domain the agent measures. */
  readonly domain: DomainSource;
  /** The balloon engine (read-only use: the host drives it). */
  readonly engine: BalloonEngine;
  /** Resolves once the agent has stopped by itself (a final refusal from the host). */
  readonly stopped: Promise<AgentError | null>;
  /** Subscribes to an event. */
  on<E extends keyof AgentEvents>(event: E, listener: (...args: AgentEvents[E]) => void): this;
  /** Subscribes to one occurrence of an event. */
  once<E extends keyof AgentEvents>(event: E, listener: (...args: AgentEvents[E]) => void): this;
  /** Unsubscribes. */
  off<E extends keyof AgentEvents>(event: E, listener: (...args: AgentEvents[E]) => void): this;
  /** Sends a frame on the current session; false when not connected (the next Welcome resyncs). */
  send(body: Body): boolean;
  /** Deflates the balloon, says Goodbye to the host, and stops. */
  close(): Promise<void>;
}

class Agent extends EventEmitter<AgentEvents> implements AgentHandle {
  readonly pid = process.pid;
  readonly engine: BalloonEngine;
  readonly domain: DomainSource;
  readonly stopped: Promise<AgentError | null>;
  private state: AgentConnectionState = 'connecting';
  private session: GuestSession | null = null;
  private sessionIdValue = '';
  private statsTimer: NodeJS.Timeout | null = null;
  private wakeUp: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  private resolveStopped!: (err: AgentError | null) => void;
  private readonly url: string;
  private readonly log: AgentLogger;
  private readonly lockWanted: boolean;
  private readonly floorOverrideMib: number;

  constructor(private readonly options: AgentOptions) {
    super();
    this.url = guestEndpoint(options.host);
    this.log = options.logger ?? silentLogger;
    this.domain =
      typeof options.domain === 'object'
        ? options.domain
        : openDomain({ domain: options.domain ?? 'auto', memoryMib: options.memoryMib, wrapped: options.wrapped ?? false });
    this.lockWanted = options.lock ?? true;
    this.floorOverrideMib = options.floorMib ?? 0;
    this.engine = new BalloonEngine({
      chunkMib: options.chunkMib ?? 1,
      lock: this.lockWanted,
      domain: this.domain,
      floorMib: this.floorOverrideMib,
      ...(options.workerThreads !== undefined ? { workerThreads: options.workerThreads } : {}),
    });
    this.stopped = new Promise((r) => (this.resolveStopped = r));
    this.engine.on('target', (t) => this.emit('target', t));
    this.engine.on('progress', (s) => {
      this.session?.send(bodies.balloonStatus(kernelChecked(s)));
      this.emit('progress', s);
    });
    this.engine.on('shortfall', (s) => {
      this.log.warn({ status: s }, `balloon short of its target: ${s.reason}${s.detail ? ` (${s.detail})` : ''}`);
      this.emit('shortfall', s);
    });
    // A worker failure is worked around by the engine; it is still news.
    this.engine.on('problem', (e) => this.onAgentProblem(e));
    let lockReported = false;
    this.engine.on('chunk', (c) => {
      if (!c.locked && !lockReported && this.lockWanted) {
        lockReported = true;
        this.log.warn({ lock: this.engine.status.lock }, this.engine.status.detail);
      }
    });
    this.setOomScoreAdj(options.oomScoreAdj === undefined ? -500 : options.oomScoreAdj);
  }

  /** Connects once the balloon's threads have started, so the first stats already include them. */
  async start(): Promise<void> {
    await this.engine.ready();
    this.log.info({ domain: this.domain.kind, totalMib: this.domain.totalMib, floorMib: this.engine.floorMib, url: this.url }, 'agent started');
    void this.connectLoop();
  }

  get balloon(): BalloonStatus {
    return this.engine.status;
  }

  get status(): AgentConnectionState {
    return this.state;
  }

  get sessionId(): string {
    return this.sessionIdValue;
  }

  send(body: Body): boolean {
    return this.session?.open ? this.session.send(body) : false;
  }

  private setOomScoreAdj(value: number | null): void {
    if (value === null) return;
    try {
      // The balloon makes this process large, which is exactly what the OOM
      // killer looks for; a lower score keeps it from being picked first.
      writeFileSync('/proc/self/oom_score_adj', String(value));
    } catch (err) {
      this.log.debug({ err }, 'could not set oom_score_adj (not permitted here)');
    }
  }

  private hello(): Hello {
    const b = this.engine.status;
    return {
      vmName: this.options.name,
      credential: this.options.token ?? '',
      agentVersion: AGENT_VERSION,
      facts: {
        pid: this.pid,
        totalMemoryMib: this.domain.totalMib,
        pageSizeBytes: this.engine.pageSizeBytes,
        chunkSizeMib: this.engine.chunkMib,
        capabilities: { pin: b.lock === 'locked', pageFusion: nativeAvailable(), deflateOnPressure: true },
        domain: this.domain.kind,
        hostname: hostname(),
      },
      balloon: {
        actualMib: b.actualMib,
        lockedMib: kernelLockedMib(b.lockedMib),
        generation: b.generation,
        targetMib: b.targetMib,
        ...(b.handedOffMib ? { handedOffMib: b.handedOffMib } : {}),
      },
    };
  }

  private sendStats(session: GuestSession): void {
    try {
      const d = this.domain.stats();
      // After a hand-off the host's limit holds part of the domain: say what the guest really has.
      const handedOffMib = this.engine.handedOffMib;
      const availableBytes = availableUnderHandOffBytes(d, this.domain.totalMib, handedOffMib);
      const freeBytes = Math.min(d.freeBytes, availableBytes);
      session.send(bodies.memoryStats(toMemoryStats({ ...d, availableBytes, freeBytes }, processRssBytes('self'))));
    } catch (err) {
      // A domain that cannot be read this time skips one tick; it never
      // takes the agent (and its balloon) down.
      this.onAgentProblem(AgentError.from(err, 'domain_unavailable'));
    }
  }

  private startSession(): GuestSession {
    return new GuestSession(
      { url: this.url, guestMemoryMib: this.domain.totalMib, helloTimeoutMs: this.options.helloTimeoutMs ?? 10_000, ...(this.options.ca !== undefined ? { ca: this.options.ca } : {}) },
      {
        hello: () => this.hello(),
        welcome: (w, session) => {
          this.state = 'connected';
          this.sessionIdValue = w.sessionId;
          session.setHeartbeatInterval(w.heartbeatIntervalMs || 2000);
          this.engine.setProtection({ floorMib: this.floorOverrideMib || w.protection.floorMib, deflateOnPressure: w.protection.deflateOnPressure });
          this.log.info({ sessionId: w.sessionId, targetMib: w.targetMib, generation: w.generation }, 'welcomed by the host');
          this.emit('connected', { sessionId: w.sessionId, url: this.url, pageFusion: w.pageFusion });
          // Tell the host where the balloon stands now, then apply its target.
          session.send(bodies.balloonStatus(kernelChecked(this.engine.status)));
          this.applyTarget(w.targetMib, w.generation, true, session);
          this.sendStats(session);
          try {
            this.options.fusion?.welcomed(w.pageFusion, (body) => session.send(body));
          } catch (err) {
            this.onAgentProblem(AgentError.from(err));
          }
          const intervalMs = w.statsIntervalMs || 1000;
          if (this.statsTimer) clearInterval(this.statsTimer);
          this.statsTimer = setInterval(() => this.sendStats(session), intervalMs);
          this.statsTimer.unref();
        },
        target: (targetMib, generation) => this.applyTarget(targetMib, generation, false, this.session),
        handOff: (handedOffMib) => this.applyHandOff(handedOffMib, this.session),
        problem: (err, fromHost) => this.onProblem(err, fromHost),
      },
    );
  }

  private applyTarget(targetMib: number, generation: number, force: boolean, session: GuestSession | null): void {
    // Shutting down: the balloon is on its way to 0 and stays there.
    if (this.closing) return;
    try {
      const applied = this.engine.setTarget(targetMib, generation, force);
      if (!applied) {
        this.log.debug({ targetMib, generation, applied: this.engine.status.generation }, 'ignored a target older than the one applied');
        return;
      }
      this.log.debug({ targetMib, generation }, 'new balloon target');
      // Say at once that the balloon moves (or is already there).
      session?.send(bodies.balloonStatus(kernelChecked({ ...this.engine.status, state: this.engine.moving ? this.engine.status.state : 'steady' })));
    } catch (err) {
      const e = AgentError.from(err);
      session?.send(bodies.error(e.code === 'target_out_of_range' ? 'out_of_range' : 'internal', e.message));
      this.onAgentProblem(e);
    }
  }

  private applyHandOff(handedOffMib: number, session: GuestSession | null): void {
    // Shutting down: the balloon deflates to 0 and hands nothing off.
    if (this.closing) return;
    try {
      const status = this.engine.handOff(handedOffMib);
      this.log.debug({ handedOffMib, done: status.handedOffMib ?? 0 }, 'handed balloon memory off to the host');
      // The host waits for this to know the pages are gone.
      session?.send(bodies.balloonStatus(kernelChecked({ ...status, state: this.engine.moving ? status.state : 'steady' })));
    } catch (err) {
      const e = AgentError.from(err);
      session?.send(bodies.error(e.code === 'target_out_of_range' ? 'out_of_range' : 'internal', e.message));
      this.onAgentProblem(e);
    }
  }

  private onProblem(err: ProtocolError, fromHost: boolean): void {
    const e = new AgentError(fromHost ? 'rejected' : 'protocol', `${fromHost ? 'the host reported' : 'refused a frame from the host'}: ${err.code}: ${err.message}`, { cause: err });
    this.onAgentProblem(e);
  }

  private onAgentProblem(e: AgentError): void {
    this.log.warn({ code: e.code }, e.message);
    this.emit('problem', e);
  }

  private async connectLoop(): Promise<void> {
    let attempt = 0;
    while (!this.closing) {
      this.state = 'connecting';
      const session = this.startSession();
      this.session = session;
      const end: SessionEnd = await session.ended;
      if (this.statsTimer) clearInterval(this.statsTimer);
      this.statsTimer = null;
      this.session = null;
      this.options.fusion?.disconnected();
      this.sessionIdValue = '';
      if (this.closing) break;
      attempt = end.welcomed ? 1 : attempt + 1;
      if (end.hostError && FINAL_ERROR_CODES.has(end.hostError.code)) {
        const e = new AgentError('rejected', `the host refused this agent: ${end.hostError.code}: ${end.hostError.message}`);
        this.log.error({ code: end.hostError.code }, e.message);
        this.emit('disconnected', { reason: end.reason, closeCode: end.closeCode, retryInMs: null });
        this.emit('problem', e);
        // Nobody will ever count this balloon again: give the memory back.
        this.closing ??= this.shutdown(false, e);
        await this.closing;
        return;
      }
      const delayMs = backoffDelayMs(attempt, this.options.backoff, end.hostError?.retryAfterMs ?? 0);
      this.state = 'waiting';
      this.log.info({ closeCode: end.closeCode, retryInMs: delayMs }, `disconnected: ${end.reason}`);
      this.emit('disconnected', { reason: end.reason, closeCode: end.closeCode, retryInMs: delayMs });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = null;
    }
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown(true);
    return this.closing;
  }

  private async shutdown(goodbye: boolean, cause: AgentError | null = null): Promise<void> {
    this.wakeUp?.();
    // Deflate while still connected, so the host sees the balloon go down.
    await this.engine.close();
    const session = this.session;
    if (session) {
      // The engine's final status (deflated) has gone out already.
      if (goodbye && session.open) await session.goodbye('agent shutting down');
      else session.terminate('agent closing');
    }
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.options.fusion?.close();
    this.state = 'closed';
    this.log.info({}, 'agent stopped');
    this.resolveStopped(cause);
  }
}

/**
 * Starts an agent: opens the memory domain, connects to the host (and keeps
 * reconnecting), and applies the host's targets. Throws AgentError for bad
 * options (a bad URL, a domain that cannot be measured).
 */
export async function startAgent(options: AgentOptions): Promise<AgentHandle> {
  const problem = vmNameProblem(options.name ?? '');
  if (problem) throw new AgentError('invalid_config', problem);
  const agent = new Agent(options);
  await agent.start();
  return agent;
}
