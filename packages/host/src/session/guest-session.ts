// One guest connection: the protocol's rules at the socket's edge. Frames are
// decoded with the facade, checked (Hello first and within a deadline,
// sequence numbers, a rate cap), and handed to the service as plain objects.
// Fatal protocol errors send an Error frame and close with 4000 + the code's
// wire number; advisory data that breaks a limit is refused and counted but
// does not end the session. No handler here throws.
import type { Logger } from 'pino';
import type { WebSocket, RawData } from 'ws';
import {
  bodies,
  closeCodeOf,
  decodeFrame,
  FrameEncoder,
  GUEST_SUBPROTOCOL,
  ProtocolError,
  SeqTracker,
  type Body,
  type DecodeOptions,
  type ErrorCode,
  type Frame,
  type Hello,
} from '@memballoon/protocol';
import type { GuestLink, HostService } from '../service/host-service.js';
import { HeartbeatSweep, PING_AFTER_SILENT_INTERVALS } from './heartbeat.js';
import { RateLimiter, type SessionLimits } from './limits.js';
import { TargetOutbox } from './outbox.js';

/** Hooks for frames the core session does not interpret (page fusion hints). */
export interface GuestFrameHooks {
  sharedRegion?(vmName: string, frame: Extract<Body, { case: 'sharedRegion' }>['value']): void;
  sharedRegionRemoved?(vmName: string, regionId: number): void;
  sessionEnded?(vmName: string): void;
}

/** What one guest session needs from the host. */
export interface GuestSessionOptions {
  service: HostService;
  limits: SessionLimits;
  /**
   * The connection's logger. Every line a guest can cause goes through it, so
   * the host hands in one charged to its host-wide budget (LogBudget.wrap).
   */
  logger: Logger;
  /** Page fusion frames (default: none). */
  hooks?: GuestFrameHooks;
  /** Counts a protocol error by code (/metrics). */
  countProtocolError?: (code: ErrorCode) => void;
  /** Called once, when the connection leaves the Hello phase (it said Hello, or closed). */
  helloDone?: () => void;
  /** The timer that checks heartbeats (default: the process-wide one for the limits' interval). */
  heartbeat?: HeartbeatSweep;
}

// Errors after which the stream cannot be trusted any more.
const FATAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'malformed_frame',
  'unsupported_version',
  'out_of_order',
  'frame_too_large',
  'unexpected_message',
  'rate_limited',
  'timeout',
]);

type Phase = 'hello' | 'admitting' | 'open' | 'closed';

/** One guest connection, from the upgrade until the socket closes. */
export class GuestSession {
  private readonly encoder = new FrameEncoder();
  private readonly seq = new SeqTracker();
  private readonly outbox: TargetOutbox;
  private readonly rate: RateLimiter;
  private readonly service: HostService;
  private readonly limits: SessionLimits;
  private readonly hooks: GuestFrameHooks;
  private readonly countProtocolError: (code: ErrorCode) => void;
  private helloDone: (() => void) | undefined;
  private readonly baseLogger: Logger;
  private logger: Logger;
  private phase: Phase = 'hello';
  private vmName = '';
  private sessionId = '';
  /** Built once, and again when the guest's memory is known (not per frame). */
  private decodeOptions: DecodeOptions;
  // Any frame or pong proves the guest alive; any frame sent proves us alive
  // to the agent's watchdog (3 intervals). A ping is due only when we have
  // been silent for 1.5 intervals (see heartbeat.ts): at 1,000 guests, pings
  // to guests that hear from us anyway were a quarter of all frames (with
  // their pongs), for nothing.
  private lastHeardMs = Date.now();
  private lastSentMs = Date.now();
  private flushTimer: NodeJS.Timeout | undefined;
  /** A hand-off asked for before the Welcome was sent (absolute: the newest wins). */
  private handOffBeforeWelcome: number | undefined;
  private readonly helloTimer: NodeJS.Timeout;
  private readonly leaveHeartbeat: () => void;
  /** How the service reaches this guest. */
  readonly link: GuestLink;

  /** Starts serving `ws`; the session runs by itself until the socket closes. */
  constructor(
    private readonly ws: WebSocket,
    options: GuestSessionOptions,
  ) {
    this.service = options.service;
    this.limits = options.limits;
    this.hooks = options.hooks ?? {};
    this.countProtocolError = options.countProtocolError ?? (() => {});
    this.helloDone = options.helloDone;
    this.baseLogger = options.logger;
    this.logger = options.logger;
    this.outbox = new TargetOutbox(this.limits.coalesceAboveBytes);
    this.rate = new RateLimiter(this.limits.maxMessagesPerSecond, Date.now());
    this.decodeOptions = { maxFrameBytes: this.limits.maxPayloadBytes, seq: this.seq };
    this.link = this.makeLink();

    this.helloTimer = setTimeout(() => {
      if (this.phase === 'hello') {
        this.countProtocolError('timeout');
        this.fail('timeout', `no Hello within ${this.limits.helloTimeoutMs} ms`);
      }
    }, this.limits.helloTimeoutMs);
    this.leaveHeartbeat = (options.heartbeat ?? HeartbeatSweep.forInterval(this.limits.heartbeatIntervalMs)).add(this);

    ws.on('pong', () => {
      this.lastHeardMs = Date.now();
    });
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', (code, reason) => this.end(`closed (${code}${reason.length > 0 ? ` ${reason.toString('utf8')}` : ''})`));
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes with 1009 by itself when a frame is above maxPayload.
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.countProtocolError('frame_too_large');
      this.logger.warn({ err: err.message }, 'guest socket error');
      this.end(`socket error: ${err.message}`);
    });

    if (ws.protocol !== GUEST_SUBPROTOCOL) {
      this.countProtocolError('unsupported_version');
      this.fail('unsupported_version', `the WebSocket subprotocol must be '${GUEST_SUBPROTOCOL}' (got '${ws.protocol}')`);
    }
  }

  /** Closes a connection that has not said Hello to make room for a newer one (see pending.ts). */
  evict(): void {
    if (this.phase !== 'hello') return;
    this.countProtocolError('rate_limited');
    this.fail('rate_limited', 'too many connections have not said Hello: the oldest are closed', 1000);
  }

  private makeLink(): GuestLink {
    const session = this;
    return {
      sendTarget: (targetMib, generation) => {
        // Welcome is the host's first frame (the protocol's order): a target
        // set between admission and Welcome waits in the outbox (latest wins).
        const now = this.outbox.offer({ targetMib, generation }, this.phase === 'open' ? this.ws.bufferedAmount : Number.POSITIVE_INFINITY);
        if (now) this.send(bodies.setBalloonTarget(now));
        else if (this.phase === 'open') this.flushTimer ??= setTimeout(() => this.flushTarget(), 50);
      },
      // Not through the outbox: a hand-off step waits for its answer, and the
      // limit it follows has already been written, so it is never dropped.
      sendHandOff: (handedOffMib) => {
        if (this.phase === 'open') this.send(bodies.handOffBalloon({ handedOffMib }));
        else this.handOffBeforeWelcome = handedOffMib;
      },
      end: (reason) => {
        if (reason.kind === 'shutdown') {
          this.send(bodies.goodbye('shutdown', 'the host is shutting down'));
          this.ws.close(1001, 'host shutdown');
          this.end('host shutdown');
        } else {
          this.fail(reason.code, reason.message);
        }
      },
      get open() {
        return session.ws.readyState === session.ws.OPEN && session.phase !== 'closed';
      },
    };
  }

  private send(body: Body): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.ws.bufferedAmount > this.limits.maxBufferedBytes) {
      // A guest that does not read its socket would make us queue without end.
      this.logger.warn({ bufferedBytes: this.ws.bufferedAmount }, 'guest does not read its socket: terminated');
      this.ws.terminate();
      return;
    }
    this.ws.send(this.encoder.encode(body), { binary: true });
    this.lastSentMs = Date.now();
  }

  private fail(code: ErrorCode, message: string, retryAfterMs = 0): void {
    if (this.phase === 'closed') return;
    this.send(bodies.error(code, message, retryAfterMs));
    // A close reason is at most 123 bytes of UTF-8.
    const reason = Buffer.from(message, 'utf8')
      .subarray(0, 120)
      .toString('utf8')
      .replace(/\uFFFD+$/, '');
    this.ws.close(closeCodeOf(code), reason);
    this.end(`${code}: ${message}`);
  }

  private leaveHello(): void {
    const done = this.helloDone;
    this.helloDone = undefined;
    done?.();
  }

  private end(why: string): void {
    if (this.phase === 'closed') return;
    const wasOpen = this.phase === 'open';
    this.phase = 'closed';
    this.leaveHello();
    clearTimeout(this.helloTimer);
    clearTimeout(this.flushTimer);
    this.leaveHeartbeat();
    if (wasOpen) {
      this.service.closeSession(this.vmName, this.sessionId, why);
      try {
        this.hooks.sessionEnded?.(this.vmName);
      } catch (err) {
        this.logger.error({ err }, 'page fusion hook threw');
      }
    }
  }

  /** Called by the heartbeat sweep: ends a guest gone silent, pings one we have not written to for a while. */
  beat(now: number): void {
    if (this.phase === 'closed') return;
    if (now - this.lastHeardMs > this.limits.heartbeatIntervalMs * this.limits.missedHeartbeats) {
      this.logger.warn({ missed: this.limits.missedHeartbeats }, 'guest missed its heartbeats: terminated');
      this.ws.terminate();
      this.end('heartbeat lost');
      return;
    }
    if (this.ws.readyState === this.ws.OPEN && now - this.lastSentMs >= this.limits.heartbeatIntervalMs * PING_AFTER_SILENT_INTERVALS) {
      this.ws.ping();
      this.lastSentMs = now;
    }
  }

  // A congested socket gets the newest target once it drains (latest wins), checked every 50 ms.
  private flushTarget(): void {
    this.flushTimer = undefined;
    if (this.ws.readyState !== this.ws.OPEN || this.phase === 'closed') return;
    const t = this.outbox.flush(this.ws.bufferedAmount);
    if (t) this.send(bodies.setBalloonTarget(t));
    else if (this.outbox.pending) this.flushTimer = setTimeout(() => this.flushTarget(), 50);
  }

  private async onHello(hello: Hello): Promise<void> {
    this.phase = 'admitting';
    this.vmName = hello.vmName;
    this.logger = this.baseLogger.child({ vm: this.vmName });
    this.logger.info(
      { agentVersion: hello.agentVersion, agentPid: hello.facts.pid, memoryMib: hello.facts.totalMemoryMib, balloon: hello.balloon },
      'guest hello',
    );
    const result = await this.service.openSession(hello, this.link, this.logger);
    if ((this.phase as Phase) === 'closed') {
      if (result.ok) this.service.closeSession(this.vmName, result.sessionId, 'disconnected during admission');
      return;
    }
    if (!result.ok) {
      this.fail(result.code, result.message, result.retryAfterMs);
      return;
    }
    this.sessionId = result.sessionId;
    const guestMemoryMib = this.service.memoryOf(this.vmName);
    if (guestMemoryMib !== undefined) this.decodeOptions = { ...this.decodeOptions, guestMemoryMib };
    this.phase = 'open';
    this.logger = this.logger.child({ sessionId: this.sessionId });
    this.send(bodies.welcome({ ...result.welcome, statsIntervalMs: this.limits.statsIntervalMs, heartbeatIntervalMs: this.limits.heartbeatIntervalMs }));
    // What was set between admission and Welcome follows it, in order.
    if (this.outbox.pending) this.flushTarget();
    if (this.handOffBeforeWelcome !== undefined) this.send(bodies.handOffBalloon({ handedOffMib: this.handOffBeforeWelcome }));
    this.handOffBeforeWelcome = undefined;
  }

  private onFrame(frame: Frame): void {
    const body = frame.body;
    if (this.phase === 'hello') {
      if (body.case !== 'hello') throw new ProtocolError('unexpected_message', `the first frame must be Hello, got ${body.case}`);
      clearTimeout(this.helloTimer);
      this.leaveHello();
      void this.onHello(body.value).catch((err) => {
        this.logger.error({ err }, 'admission failed');
        this.fail('internal', 'the host failed to admit the guest');
      });
      return;
    }
    const open = this.phase === 'open';
    switch (body.case) {
      case 'balloonStatus':
        if (open) this.service.onStatus(this.vmName, this.sessionId, body.value);
        return;
      case 'memoryStats':
        if (open) this.service.onStats(this.vmName, this.sessionId, body.value);
        return;
      case 'goodbye':
        this.logger.info({ reason: body.value.reason, message: body.value.message }, 'guest said goodbye');
        this.ws.close(1000, 'goodbye');
        this.end('goodbye');
        return;
      case 'error':
        this.logger.warn({ code: body.value.code, message: body.value.message }, 'guest reported an error');
        return;
      case 'sharedRegion':
        if (open) this.hooks.sharedRegion?.(this.vmName, body.value);
        return;
      case 'sharedRegionRemoved':
        if (open) this.hooks.sharedRegionRemoved?.(this.vmName, body.value.regionId);
        return;
      default:
        throw new ProtocolError('unexpected_message', `a guest may not send ${body.case}`);
    }
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.phase === 'closed') return;
    const nowMs = Date.now();
    this.lastHeardMs = nowMs;
    try {
      if (!this.rate.take(nowMs)) throw new ProtocolError('rate_limited', `more than ${this.limits.maxMessagesPerSecond} frames per second`);
      if (!isBinary) throw new ProtocolError('malformed_frame', 'a frame must be binary, not text');
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      // Before Hello nobody is authenticated: a stranger gets the smallest buffer.
      if (this.phase === 'hello' && bytes.length > this.limits.maxHelloBytes)
        throw new ProtocolError('frame_too_large', `a Hello is at most ${this.limits.maxHelloBytes} bytes (got ${bytes.length})`);
      this.onFrame(decodeFrame(bytes, this.decodeOptions));
    } catch (err) {
      const e = ProtocolError.from(err);
      this.countProtocolError(e.code);
      if (this.phase === 'hello' || FATAL.has(e.code) || e.code === 'internal') {
        this.logger.warn({ code: e.code }, `protocol error: ${e.message}`);
        this.fail(e.code, e.message, e.code === 'rate_limited' ? 1000 : 0);
      } else {
        // Advisory data beyond the limits (a balloon above the guest's
        // memory, an absurd stat): refused and logged, the session goes on.
        this.logger.warn({ code: e.code }, `guest frame refused: ${e.message}`);
        this.send(bodies.error(e.code, e.message));
      }
    }
  }
}
