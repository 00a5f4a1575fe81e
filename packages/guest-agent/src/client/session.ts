// One WebSocket session with the host: Hello, Welcome, then targets in and
// statuses and statistics out, until the socket closes. Reconnecting is the
// caller's job (../agent.ts); a session never outlives its socket.
import WebSocket from 'ws';
import {
  closeCodeOf,
  errorCodeOfClose,
  FrameEncoder,
  GUEST_SUBPROTOCOL,
  MAX_FRAME_BYTES,
  ProtocolError,
  SeqTracker,
  bodies,
  decodeFrame,
  type Body,
  type ErrorCode,
  type Hello,
  type Welcome,
} from '@memballoon/protocol';

/** How a session ended. */
export interface SessionEnd {
  /** Whether the host answered Hello with Welcome. */
  welcomed: boolean;
  /** The WebSocket close code (1006 when the socket just dropped). */
  closeCode: number;
  /** The protocol error that ended it, from the host's Error frame or close code, if any. */
  hostError: { code: ErrorCode; message: string; retryAfterMs: number } | null;
  /** Why, in words. */
  reason: string;
}

/** What a session needs from the agent. */
export interface SessionHandlers {
  hello(): Hello;
  welcome(w: Welcome, session: GuestSession): void;
  target(targetMib: number, generation: number): void;
  /** The host's limit took over balloon MiB: release pinned chunks until handedOffMib are handed off. */
  handOff(handedOffMib: number): void;
  /** A non-fatal problem (a frame refused, an Error from the host). */
  problem(err: ProtocolError, fromHost: boolean): void;
}

/** Session settings. */
export interface SessionOptions {
  url: string;
  guestMemoryMib: number;
  /** How long to wait for the socket and Welcome (ms). */
  helloTimeoutMs: number;
  /** CA certificate(s) for wss:// (self-signed hosts); the server's certificate is always verified. */
  ca?: string | Buffer;
}

/** Error codes whose Error frames from the host we treat as a refusal of this frame only. */
const NON_FATAL_FROM_HOST: ReadonlySet<ErrorCode> = new Set(['out_of_range', 'invalid_argument', 'unexpected_message', 'rate_limited']);

/** One connection to the host. */
export class GuestSession {
  private readonly ws: WebSocket;
  private readonly encoder = new FrameEncoder();
  private readonly seq = new SeqTracker();
  private welcomed = false;
  private hostError: SessionEnd['hostError'] = null;
  private localReason = '';
  private watchdog: NodeJS.Timeout | null = null;
  private heartbeatIntervalMs = 0;
  /** Resolves when the socket has closed. */
  readonly ended: Promise<SessionEnd>;

  constructor(
    private readonly options: SessionOptions,
    private readonly handlers: SessionHandlers,
  ) {
    this.ws = new WebSocket(options.url, GUEST_SUBPROTOCOL, {
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: options.helloTimeoutMs,
      perMessageDeflate: false,
      // Never rejectUnauthorized: false; a private CA is given, not skipped.
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
    });
    this.ended = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.clearWatchdog();
        resolve({
          welcomed: this.welcomed,
          closeCode: code,
          hostError: this.hostError ?? closeCodeError(code, reason.toString()),
          reason: this.localReason || reason.toString() || `closed with code ${code}`,
        });
      });
    });
    this.ws.on('error', (err) => {
      // 'close' follows every 'error'; remember why for the end report.
      this.localReason ||= err.message;
    });
    this.ws.on('open', () => {
      this.send(bodies.hello(this.handlers.hello()));
      this.armWatchdog(this.options.helloTimeoutMs, 'no Welcome from the host');
    });
    this.ws.on('ping', () => this.heard());
    this.ws.on('pong', () => this.heard());
    this.ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    this.armWatchdog(options.helloTimeoutMs, 'could not connect to the host in time');
  }

  /** Whether the host has welcomed this session and the socket is open. */
  get open(): boolean {
    return this.welcomed && this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends one frame if the socket is open; drops it otherwise (the next Hello resyncs). */
  send(body: Body): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(this.encoder.encode(body), { binary: true });
    return true;
  }

  /** Sends Goodbye and closes normally; resolves when closed. */
  async goodbye(message = ''): Promise<SessionEnd> {
    this.localReason = 'the agent said goodbye';
    if (this.send(bodies.goodbye('shutdown', message))) this.ws.close(1000, 'goodbye');
    else this.ws.terminate();
    // Do not wait forever for a host that never answers the close.
    const timer = setTimeout(() => this.ws.terminate(), 2000);
    const end = await this.ended;
    clearTimeout(timer);
    return end;
  }

  /** Drops the socket at once (a dead host, or close()). */
  terminate(reason: string): void {
    this.localReason ||= reason;
    this.ws.terminate();
  }

  /** Sets the heartbeat interval from Welcome: silence for 3 intervals ends the session. */
  setHeartbeatInterval(intervalMs: number): void {
    this.heartbeatIntervalMs = intervalMs > 0 ? intervalMs : 2000;
    this.heard();
  }

  private heard(): void {
    if (this.welcomed && this.heartbeatIntervalMs > 0) {
      this.armWatchdog(this.heartbeatIntervalMs * 3, `heard nothing from the host for 3 heartbeat intervals (${this.heartbeatIntervalMs * 3} ms)`);
    }
  }

  private armWatchdog(ms: number, reason: string): void {
    this.clearWatchdog();
    this.watchdog = setTimeout(() => this.terminate(reason), ms);
    this.watchdog.unref();
  }

  private clearWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
  }

  /** Refuses a frame: tells the host with an Error frame; fatal codes also close the socket. */
  private refuse(err: ProtocolError, fatal: boolean): void {
    this.handlers.problem(err, false);
    this.send(bodies.error(err.code, err.message));
    if (fatal) {
      this.localReason = `refused a frame from the host: ${err.message}`;
      this.ws.close(closeCodeOf(err.code), err.code);
    }
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    this.heard();
    if (!isBinary) {
      this.refuse(new ProtocolError('malformed_frame', 'the host sent a text frame; frames are binary'), true);
      return;
    }
    let frame: ReturnType<typeof decodeFrame>;
    try {
      frame = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), { guestMemoryMib: this.options.guestMemoryMib, seq: this.seq });
    } catch (err) {
      const e = ProtocolError.from(err, 'malformed_frame');
      // A number out of range (a target above the guest's memory) is a bad
      // request, not a broken stream: refuse it and keep the session and the
      // balloon. Anything else (or a bad Welcome) means the stream cannot be
      // trusted: close, and let the reconnect start afresh.
      this.refuse(e, e.code !== 'out_of_range' || !this.welcomed);
      return;
    }
    const body = frame.body;
    if (!this.welcomed) {
      if (body.case === 'welcome') {
        this.welcomed = true;
        this.handlers.welcome(body.value, this);
        return;
      }
      if (body.case === 'error') {
        this.hostError = body.value;
        this.handlers.problem(new ProtocolError(body.value.code, body.value.message), true);
        return;
      }
      this.refuse(new ProtocolError('unexpected_message', `expected welcome, got ${body.case}`), true);
      return;
    }
    switch (body.case) {
      case 'setBalloonTarget':
        this.handlers.target(body.value.targetMib, body.value.generation);
        return;
      case 'handOffBalloon':
        this.handlers.handOff(body.value.handedOffMib);
        return;
      case 'error':
        if (!NON_FATAL_FROM_HOST.has(body.value.code)) this.hostError = body.value;
        this.handlers.problem(new ProtocolError(body.value.code, body.value.message), true);
        return;
      case 'goodbye':
        this.localReason = `the host said goodbye (${body.value.reason}${body.value.message ? `: ${body.value.message}` : ''})`;
        return;
      default:
        this.refuse(new ProtocolError('unexpected_message', `a guest does not expect ${body.case} from the host`), false);
    }
  }
}

function closeCodeError(code: number, reason: string): SessionEnd['hostError'] {
  const name = errorCodeOfClose(code);
  if (name === undefined) return null;
  return { code: name, message: reason || name, retryAfterMs: 0 };
}
