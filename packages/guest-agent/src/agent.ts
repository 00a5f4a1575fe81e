// startAgent: the balloon engine, the guest's memory domain and the session
// with the host, tied together with reconnects. A dropped connection keeps
// the balloon (the host's pool still counts it); the next Hello carries it so
// the host resyncs. Only close() (or a host's final refusal) deflates.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { writeFileSync } from 'node:fs';
import { BYTES_PER_MIB, bodies, FINAL_ERROR_CODES, vmNameProblem, type Body, type BalloonStatus, type Hello, type ProtocolError } from '@memballoon/protocol';
import type { AgentConnectionState, AgentEvents, AgentHandle, AgentOptions, ReadyOptions, SettledOptions } from './agent-types.js';
import { BalloonEngine } from './balloon/engine.js';
import { availableUnderHandOffBytes } from './balloon/floor.js';
import { openDomain } from './domain/readers.js';
import { processLockedBytes, processRssBytes } from './domain/readers.js';
import type { DomainSource } from './domain/source.js';
import { AgentError } from './errors.js';
import { silentLogger, type AgentLogger } from './logger.js';
import { toMemoryStats } from './stats.js';
import { backoffDelayMs } from './client/backoff.js';
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
  const kernelMib = Math.floor(processLockedBytes('self') / BYTES_PER_MIB);
  return Math.min(bookkeptMib, kernelMib);
}

/** A status with its lockedMib checked against the kernel. */
function kernelChecked(status: BalloonStatus): BalloonStatus {
  return { ...status, lockedMib: kernelLockedMib(status.lockedMib) };
}

/** The agent's version, sent in Hello. */
export const AGENT_VERSION = '0.1.0';

export type { AgentConnectionState, AgentEvents, AgentHandle, AgentOptions, ReadyOptions, SessionPlugin, SettledOptions } from './agent-types.js';

/** How long ready() waits for a Welcome by default. */
const DEFAULT_READY_TIMEOUT_MS = 30_000;
/** How long settled() waits by default. */
const DEFAULT_SETTLED_TIMEOUT_MS = 60_000;

/** Someone waiting in ready(): settled by the next Welcome, refusal or close. */
interface ReadyWaiter {
  resolve: () => void;
  reject: (err: AgentError) => void;
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
  private readyWaiters = new Set<ReadyWaiter>();
  /** Why the last session ended ('' before any): named when ready() times out. */
  private lastEndReason = '';
  /** The host's code of the last refusal ('' after a session that was not refused). */
  private lastRefusalCode = '';
  /** The last settled outcome logged (state/reason/generation): each is logged once, not at every step. */
  private loggedOutcome = '';
  /** Resolves when close() (or a final refusal) begins: wakes settled() waiters. */
  private readonly closingSignal: Promise<void>;
  private signalClosing!: () => void;

  constructor(private readonly options: AgentOptions) {
    super();
    this.url = guestEndpoint(options.host);
    this.log = options.logger ?? silentLogger;
    this.domain =
      typeof options.domain === 'object'
        ? options.domain
        : openDomain({
            domain: options.domain ?? 'auto',
            memoryMib: options.memoryMib,
            wrapped: options.wrapped ?? false,
            ...(options.processes !== undefined ? { roots: options.processes } : {}),
          });
    this.lockWanted = options.lock ?? true;
    this.floorOverrideMib = options.floorMib ?? 0;
    this.engine = new BalloonEngine({
      chunkMib: options.chunkMib ?? 1,
      lock: this.lockWanted,
      domain: this.domain,
      floorMib: this.floorOverrideMib,
      tuneMalloc: options.tuneMalloc ?? false,
      ...(options.workerThreads !== undefined ? { workerThreads: options.workerThreads } : {}),
    });
    this.stopped = new Promise((r) => (this.resolveStopped = r));
    this.closingSignal = new Promise((r) => (this.signalClosing = r));
    this.engine.on('target', (t) => this.emit('target', t));
    this.engine.on('progress', (s) => {
      this.session?.send(bodies.balloonStatus(kernelChecked(s)));
      if (s.state === 'steady' || s.state === 'short') this.logOutcome(s);
      this.emit('progress', s);
    });
    this.engine.on('shortfall', (s) => this.emit('shortfall', s));
    // A failed fault-in call is worked around by the engine; it is still news.
    this.engine.on('problem', (e) => this.onAgentProblem(e));
    let lockReported = false;
    this.engine.on('chunk', (c) => {
      if (!c.locked && !lockReported && this.lockWanted) {
        lockReported = true;
        this.log.warn({ lock: this.engine.status.lock }, this.engine.status.detail);
      }
    });
    this.setOomScoreAdj(options.oomScoreAdj ?? null);
  }

  /** Connects once the balloon's threads have started, so the first stats already include them. */
  async start(): Promise<void> {
    await this.engine.ready();
    this.log.info(
      { host: this.options.host, url: this.url, domain: this.domain.kind, totalMib: this.domain.totalMib, floorMib: this.engine.floorMib },
      `agent started: VM '${this.options.name}' of ${this.domain.totalMib} MiB (${this.domain.kind} domain), connecting to ${this.url}`,
    );
    void this.connectLoop();
  }

  /**
   * Logs where the balloon came to rest, once per outcome: a balloon parked
   * at its floor that gives up memory step by step stays one line, and
   * reaching a target is one info line.
   */
  private logOutcome(s: BalloonStatus): void {
    const outcome = `${s.state}/${s.reason}/${s.generation}`;
    if (outcome === this.loggedOutcome) {
      this.log.debug({ actualMib: s.actualMib, targetMib: s.targetMib, reason: s.reason }, 'balloon moved again, same outcome');
      return;
    }
    this.loggedOutcome = outcome;
    const fields = { targetMib: s.targetMib, actualMib: s.actualMib, lockedMib: s.lockedMib, state: s.state, reason: s.reason, generation: s.generation };
    if (s.state === 'steady') this.log.info(fields, `balloon reached its target of ${s.targetMib} MiB`);
    else this.log.warn(fields, `balloon short of its target (${s.actualMib} of ${s.targetMib} MiB): ${s.reason}${s.detail ? `: ${s.detail}` : ''}`);
  }

  ready(options: ReadyOptions = {}): Promise<void> {
    if (this.state === 'connected') return Promise.resolve();
    if (this.closing) return Promise.reject(new AgentError('closed', 'the agent is closed'));
    const timeoutMs = options.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    return new Promise<void>((resolve, reject) => {
      const waiter: ReadyWaiter = {
        resolve: () => {
          clearTimeout(timer);
          this.readyWaiters.delete(waiter);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          this.readyWaiters.delete(waiter);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        const last = this.lastEndReason ? `; the last attempt ended: ${this.lastEndReason}` : '';
        waiter.reject(new AgentError('timeout', `the host at ${this.url} did not welcome VM '${this.options.name}' within ${timeoutMs} ms${last}`));
      }, timeoutMs);
      this.readyWaiters.add(waiter);
    });
  }

  async settled(options: SettledOptions = {}): Promise<BalloonStatus> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_SETTLED_TIMEOUT_MS;
    const wantMib = options.targetMib;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const b = this.engine.status;
        const waitingFor = wantMib !== undefined && b.targetMib !== wantMib ? `a target of ${wantMib} MiB never arrived` : 'the balloon did not settle';
        reject(new AgentError('timeout', `${waitingFor} within ${timeoutMs} ms: it is at ${b.actualMib} of ${b.targetMib} MiB (${b.state})`));
      }, timeoutMs);
    });
    const closed = this.closingSignal.then(() => {
      throw new AgentError('closed', 'the agent closed while waiting for the balloon to settle');
    });
    const work = (async () => {
      while (wantMib !== undefined && this.engine.status.targetMib !== wantMib) {
        await new Promise<void>((resolve) => {
          const on = () => {
            this.engine.off('target', on);
            resolve();
          };
          this.engine.on('target', on);
          void this.closingSignal.then(on);
        });
        if (this.closing) break;
      }
      return this.engine.settled();
    })();
    try {
      return await Promise.race([work, expired, closed]);
    } finally {
      clearTimeout(timer);
    }
  }

  private settleReadyWaiters(err: AgentError | null): void {
    for (const w of [...this.readyWaiters]) {
      if (err) w.reject(err);
      else w.resolve();
    }
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
      {
        url: this.url,
        guestMemoryMib: this.domain.totalMib,
        helloTimeoutMs: this.options.helloTimeoutMs ?? 10_000,
        ...(this.options.ca !== undefined ? { ca: this.options.ca } : {}),
      },
      {
        hello: () => this.hello(),
        welcome: (w, session) => {
          this.state = 'connected';
          this.sessionIdValue = w.sessionId;
          session.setHeartbeatInterval(w.heartbeatIntervalMs || 2000);
          this.engine.setProtection({ floorMib: this.floorOverrideMib || w.protection.floorMib, deflateOnPressure: w.protection.deflateOnPressure });
          this.log.info({ sessionId: w.sessionId, targetMib: w.targetMib, generation: w.generation, url: this.url }, `welcomed by the host at ${this.url}`);
          this.emit('connected', { sessionId: w.sessionId, url: this.url, pageFusion: w.pageFusion });
          this.settleReadyWaiters(null);
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
      const startMs = performance.now();
      const status = this.engine.handOff(handedOffMib);
      // releaseMs: the kernel's part of the hand-off (munlock + MADV_DONTNEED), for the split in the host's README.
      this.log.debug(
        { handedOffMib, done: status.handedOffMib ?? 0, releaseMs: Math.round((performance.now() - startMs) * 10) / 10 },
        'handed balloon memory off to the host',
      );
      // The host waits for this to know the pages are gone. The state is the
      // engine's own: a balloon that stopped short (at the guest's floor)
      // stays short after a hand-off, not steady.
      session?.send(bodies.balloonStatus(kernelChecked(status)));
    } catch (err) {
      const e = AgentError.from(err);
      session?.send(bodies.error(e.code === 'target_out_of_range' ? 'out_of_range' : 'internal', e.message));
      this.onAgentProblem(e);
    }
  }

  private onProblem(err: ProtocolError, fromHost: boolean): void {
    const e = new AgentError(
      fromHost ? 'rejected' : 'protocol',
      `${fromHost ? 'the host reported' : 'refused a frame from the host'}: ${err.code}: ${err.message}`,
      {
        cause: err,
        ...(fromHost ? { hostCode: err.code } : {}),
      },
    );
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
      this.lastEndReason = end.hostError ? `${end.hostError.code}: ${end.hostError.message}` : end.reason;
      const refusal = end.hostError
        ? new AgentError('rejected', `the host at ${this.url} refused VM '${this.options.name}': ${end.hostError.code}: ${end.hostError.message}`, {
            hostCode: end.hostError.code,
          })
        : null;
      // Whoever waits in ready() hears the refusal now, final or not.
      if (refusal) this.settleReadyWaiters(refusal);
      if (refusal && end.hostError && FINAL_ERROR_CODES.has(end.hostError.code)) {
        const e = refusal;
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
      // The same refusal again and again (pool_exhausted until memory frees
      // up) is one warning, then debug lines: a change is news, a repeat is not.
      const said = this.lastRefusalCode;
      this.lastRefusalCode = refusal?.hostCode ?? '';
      if (refusal && refusal.hostCode !== said)
        this.log.warn({ code: refusal.hostCode, closeCode: end.closeCode, retryInMs: delayMs }, `${refusal.message}; retrying`);
      else if (refusal) this.log.debug({ code: refusal.hostCode, retryInMs: delayMs }, `${refusal.message}; retrying`);
      else this.log.info({ closeCode: end.closeCode, retryInMs: delayMs }, `disconnected: ${end.reason}`);
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
    this.signalClosing();
    this.settleReadyWaiters(cause ?? new AgentError('closed', 'the agent closed before the host welcomed it'));
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
