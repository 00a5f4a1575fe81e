// The public shapes of startAgent: its options, its events and the handle it
// returns. The behaviour is in ./agent.ts.
import type { Body, BalloonStatus } from '@memballoon/protocol';
import type { BalloonEngine } from './balloon/engine.js';
import type { BackoffOptions } from './client/backoff.js';
import type { DomainKind, DomainSource } from './domain/source.js';
import type { AgentError } from './errors.js';
import type { AgentLogger } from './logger.js';

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
  /**
   * The VM's memory size in MiB. Required unless the agent's memory cgroup
   * has a limit (that is the size then) or `domain` is 'machine' on purpose.
   */
  memoryMib?: number;
  /**
   * The processes that make up the guest (the process domain's roots, with
   * their descendants), default this process. Naming others (a child under
   * test) squeezes them: the balloon, held by this process, counts as used
   * in their domain. Needs memoryMib.
   */
  processes?: readonly number[];
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
  /**
   * oom_score_adj written for this process where allowed (default null:
   * leave the embedding process alone; the balloon-agent CLI writes -500, as
   * the balloon makes it the largest process, the OOM killer's first pick).
   */
  oomScoreAdj?: number | null;
  /** Retune glibc's mmap threshold for the whole process (default false; the CLI: true). See BalloonEngineOptions.tuneMalloc. */
  tuneMalloc?: boolean;
  /** Reconnect backoff. */
  backoff?: BackoffOptions;
  /** How long to wait for the socket and Welcome, in ms (default 10 000). */
  helloTimeoutMs?: number;
  /** Lanes of parallel fault-in, two async libc calls each on libuv's pool (default: one per core, at most 4; 0: the main thread commits). See BalloonEngineOptions.workerThreads. */
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

/** Options of AgentHandle.ready. */
export interface ReadyOptions {
  /** Give up after this many ms (default 30 000): rejects with code `timeout`, naming the last attempt's end. */
  timeoutMs?: number;
}

/** Options of AgentHandle.settled. */
export interface SettledOptions {
  /** Wait until a target of this size has been applied (a target the host is about to send), then until it settles. */
  targetMib?: number;
  /** Give up after this many ms (default 60 000): rejects with code `timeout`, saying where the balloon is. */
  timeoutMs?: number;
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
  /** Resolves once the agent has stopped: null after close(), the error after a final refusal from the host. */
  readonly stopped: Promise<AgentError | null>;
  /**
   * Resolves once the host has welcomed the agent (at once if it is
   * connected now). Rejects with AgentError: `rejected` when the host refuses
   * the agent (any refusal, e.g. pool_exhausted or auth_failed: `hostCode`
   * says which; the agent retries those the protocol does not call final,
   * and ready() may be called again to wait for the next attempt),
   * `timeout`, or `closed`.
   */
  ready(options?: ReadyOptions): Promise<void>;
  /**
   * Resolves with the balloon's status once it stops moving (`state` steady,
   * or short with its `reason`). With `targetMib`, first waits for that
   * target to arrive. Rejects with AgentError `timeout` or `closed`.
   */
  settled(options?: SettledOptions): Promise<BalloonStatus>;
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
