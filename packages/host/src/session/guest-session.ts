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
  type ErrorCode,
  type Frame,
  type Hello,
} from '@memballoon/protocol';
import type { GuestLink, HostService } from '../service/host-service.js';
import { RateLimiter, type SessionLimits } from './limits.js';
import { TargetOutbox } from './outbox.js';

/** Hooks for frames the core session does not interpret (page fusion hints). */
export interface GuestFrameHooks {
  sharedRegion?(vmName: string, frame: Extract<Body, { case: 'sharedRegion' }>['value']): void;
  sharedRegionRemoved?(vmName: string, regionId: number): void;
  sessionEnded?(vmName: string): void;
}

// Errors after which the stream cannot be trusted any more.
const FATAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['malformed_frame', 'unsupported_version', 'out_of_order', 'frame_too_large', 'unexpected_message', 'rate_limited', 'timeout']);

/**
 * Runs one guest connection until it closes; `helloDone` is called once, when
 * the connection leaves the Hello phase; `mayLog` is the host-wide budget of
 * protocol-error log lines (they are always counted, only logged while it lasts).
 */
export function runGuestSession(
  ws: WebSocket,
  service: HostService,
  limits: SessionLimits,
  baseLogger: Logger,
  hooks: GuestFrameHooks = {},
  countProtocolError: (code: string) => void = () => {},
  helloDone: () => void = () => {},
  mayLog: () => boolean = () => true,
): void {
  const encoder = new FrameEncoder();
  const outbox = new TargetOutbox(limits.coalesceAboveBytes);
  let flushTimer: NodeJS.Timeout | undefined;
  let helloPending = true;
  const leaveHello = (): void => {
    if (helloPending) {
      helloPending = false;
      helloDone();
    }
  };
  const seq = new SeqTracker();
  const rate = new RateLimiter(limits.maxMessagesPerSecond, Date.now());
  let logger = baseLogger;
  let phase: 'hello' | 'admitting' | 'open' | 'closed' = 'hello';
  let vmName = '';
  let sessionId = '';
  let guestMemoryMib: number | undefined;
  let lastPongMs = Date.now();

  const send = (body: Body): void => {
    if (ws.readyState !== ws.OPEN) return;
    if (ws.bufferedAmount > limits.maxBufferedBytes) {
      // A guest that does not read its socket would make us queue without end.
      logger.warn({ bufferedBytes: ws.bufferedAmount }, 'guest does not read its socket: terminated');
      ws.terminate();
      return;
    }
    ws.send(encoder.encode(body), { binary: true });
  };

  const fail = (code: ErrorCode, message: string, retryAfterMs = 0): void => {
    if (phase === 'closed') return;
    send(bodies.error(code, message, retryAfterMs));
    // A close reason is at most 123 bytes of UTF-8.
    const reason = Buffer.from(message, 'utf8').subarray(0, 120).toString('utf8').replace(/\uFFFD+$/, '');
    ws.close(closeCodeOf(code), reason);
    end(`${code}: ${message}`);
  };

  const end = (why: string): void => {
    if (phase === 'closed') return;
    const wasOpen = phase === 'open';
    phase = 'closed';
    leaveHello();
    clearTimeout(helloTimer);
    clearTimeout(flushTimer);
    clearInterval(heartbeat);
    if (wasOpen) {
      service.closeSession(vmName, sessionId, why);
      try {
        hooks.sessionEnded?.(vmName);
      } catch (err) {
        logger.error({ err }, 'page fusion hook threw');
      }
    }
  };

  // A congested socket gets the newest target once it drains (latest wins), checked every 50 ms.
  const flushTarget = (): void => {
    flushTimer = undefined;
    if (ws.readyState !== ws.OPEN || phase === 'closed') return;
    const t = outbox.flush(ws.bufferedAmount);
    if (t) send(bodies.setBalloonTarget(t));
    else if (outbox.pending) flushTimer = setTimeout(flushTarget, 50);
  };
  const link: GuestLink = {
    sendTarget: (targetMib, generation) => {
      const now = outbox.offer({ targetMib, generation }, ws.bufferedAmount);
      if (now) send(bodies.setBalloonTarget(now));
      else flushTimer ??= setTimeout(flushTarget, 50);
    },
    // Not through the outbox: a hand-off step waits for its answer, and the
    // limit it follows has already been written, so it is never dropped.
    sendHandOff: (handedOffMib) => send(bodies.handOffBalloon({ handedOffMib })),
    end: (reason) => {
      if (reason.kind === 'shutdown') {
        send(bodies.goodbye('shutdown', 'the host is shutting down'));
        ws.close(1001, 'host shutdown');
        end('host shutdown');
      } else {
        fail(reason.code, reason.message);
      }
    },
    get open() {
      return ws.readyState === ws.OPEN && phase !== 'closed';
    },
  };

  const helloTimer = setTimeout(() => {
    if (phase === 'hello') {
      countProtocolError('timeout');
      fail('timeout', `no Hello within ${limits.helloTimeoutMs} ms`);
    }
  }, limits.helloTimeoutMs);

  const heartbeat = setInterval(() => {
    if (Date.now() - lastPongMs > limits.heartbeatIntervalMs * limits.missedHeartbeats) {
      logger.warn({ missed: limits.missedHeartbeats }, 'guest missed its heartbeats: terminated');
      ws.terminate();
      end('heartbeat lost');
      return;
    }
    if (ws.readyState === ws.OPEN) ws.ping();
  }, limits.heartbeatIntervalMs);
  ws.on('pong', () => {
    lastPongMs = Date.now();
  });

  const onHello = async (hello: Hello): Promise<void> => {
    phase = 'admitting';
    vmName = hello.vmName;
    logger = baseLogger.child({ vm: vmName });
    logger.info({ agentVersion: hello.agentVersion, pid: hello.facts.pid, memoryMib: hello.facts.totalMemoryMib, balloon: hello.balloon }, 'guest hello');
    const result = await service.openSession(hello, link, logger);
    if ((phase as string) === 'closed') {
      if (result.ok) service.closeSession(vmName, result.sessionId, 'disconnected during admission');
      return;
    }
    if (!result.ok) {
      fail(result.code, result.message, result.retryAfterMs);
      return;
    }
    sessionId = result.sessionId;
    guestMemoryMib = service.memoryOf(vmName);
    phase = 'open';
    logger = logger.child({ sessionId });
    send(bodies.welcome({ ...result.welcome, statsIntervalMs: limits.statsIntervalMs, heartbeatIntervalMs: limits.heartbeatIntervalMs }));
  };

  const onFrame = (frame: Frame): void => {
    seq.accept(frame.seq);
    const body = frame.body;
    if (phase === 'hello') {
      if (body.case !== 'hello') throw new ProtocolError('unexpected_message', `the first frame must be Hello, got ${body.case}`);
      clearTimeout(helloTimer);
      leaveHello();
      void onHello(body.value).catch((err) => {
        logger.error({ err }, 'admission failed');
        fail('internal', 'the host failed to admit the guest');
      });
      return;
    }
    switch (body.case) {
      case 'balloonStatus':
        if (phase === 'open') service.onStatus(vmName, sessionId, body.value);
        return;
      case 'memoryStats':
        if (phase === 'open') service.onStats(vmName, sessionId, body.value);
        return;
      case 'goodbye':
        logger.info({ reason: body.value.reason, message: body.value.message }, 'guest said goodbye');
        ws.close(1000, 'goodbye');
        end('goodbye');
        return;
      case 'error':
        logger.warn({ code: body.value.code, message: body.value.message }, 'guest reported an error');
        return;
      case 'sharedRegion':
        if (phase === 'open') hooks.sharedRegion?.(vmName, body.value);
        return;
      case 'sharedRegionRemoved':
        if (phase === 'open') hooks.sharedRegionRemoved?.(vmName, body.value.regionId);
        return;
      default:
        throw new ProtocolError('unexpected_message', `a guest may not send ${body.case}`);
    }
  };

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (phase === 'closed') return;
    try {
      if (!rate.take(Date.now())) throw new ProtocolError('rate_limited', `more than ${limits.maxMessagesPerSecond} frames per second`);
      if (!isBinary) throw new ProtocolError('malformed_frame', 'a frame must be binary, not text');
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      // Before Hello nobody is authenticated: a stranger gets the smallest buffer.
      if (phase === 'hello' && bytes.length > limits.maxHelloBytes) throw new ProtocolError('frame_too_large', `a Hello is at most ${limits.maxHelloBytes} bytes (got ${bytes.length})`);
      const opts = guestMemoryMib === undefined ? { maxFrameBytes: limits.maxPayloadBytes } : { maxFrameBytes: limits.maxPayloadBytes, guestMemoryMib };
      onFrame(decodeFrame(bytes, opts));
    } catch (err) {
      const e = ProtocolError.from(err);
      countProtocolError(e.code);
      if (phase === 'hello' || FATAL.has(e.code) || e.code === 'internal') {
        if (mayLog()) logger.warn({ code: e.code }, `protocol error: ${e.message}`);
        fail(e.code, e.message, e.code === 'rate_limited' ? 1000 : 0);
      } else {
        // Advisory data beyond the limits (a balloon above the guest's
        // memory, an absurd stat): refused and logged, the session goes on.
        if (mayLog()) logger.warn({ code: e.code }, `guest frame refused: ${e.message}`);
        send(bodies.error(e.code, e.message));
      }
    }
  });
  ws.on('close', (code, reason) => end(`closed (${code}${reason.length > 0 ? ` ${reason.toString('utf8')}` : ''})`));
  ws.on('error', (err: Error & { code?: string }) => {
    // ws closes with 1009 by itself when a frame is above maxPayload.
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') countProtocolError('frame_too_large');
    if (mayLog()) logger.warn({ err: err.message }, 'guest socket error');
    end(`socket error: ${err.message}`);
  });

  if (ws.protocol !== GUEST_SUBPROTOCOL) {
    countProtocolError('unsupported_version');
    fail('unsupported_version', `the WebSocket subprotocol must be '${GUEST_SUBPROTOCOL}' (got '${ws.protocol}')`);
  }
}
