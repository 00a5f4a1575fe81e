// Per-connection limits of guest sessions, in one place so that hardening can
// tighten them without hunting through the session code.
import { MAX_FRAME_BYTES } from '@memballoon/protocol';

/** Limits and intervals applied to every guest connection. */
export interface SessionLimits {
  /** Largest frame accepted (ws maxPayload); larger frames close the socket with 1009. */
  maxPayloadBytes: number;
  /** The guest must send Hello within this long after connecting. */
  helloTimeoutMs: number;
  /** Frames a guest may send per second (token bucket, burst of the same size). */
  maxMessagesPerSecond: number;
  /** How often the host pings; a guest that misses 3 pongs in a row is terminated. */
  heartbeatIntervalMs: number;
  /** Missed heartbeat intervals before the connection is terminated. */
  missedHeartbeats: number;
  /** How often the guest is asked to send MemoryStats. */
  statsIntervalMs: number;
  /** Outbound bytes queued on one socket above which the guest is considered stuck and dropped. */
  maxBufferedBytes: number;
}

/** The defaults: generous for a healthy agent (a status every 100 ms plus stats), tight for a flood. */
export const DEFAULT_SESSION_LIMITS: Readonly<SessionLimits> = Object.freeze({
  maxPayloadBytes: MAX_FRAME_BYTES,
  helloTimeoutMs: 5_000,
  maxMessagesPerSecond: 200,
  heartbeatIntervalMs: 2_000,
  missedHeartbeats: 3,
  statsIntervalMs: 1_000,
  maxBufferedBytes: 4 * 1024 * 1024,
});

/** A token bucket: `take()` is false once more than `ratePerSecond` frames came in a second. */
export class RateLimiter {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly ratePerSecond: number,
    nowMs: number,
  ) {
    this.tokens = ratePerSecond;
    this.lastMs = nowMs;
  }

  /** Takes one token; false when the bucket is empty. */
  take(nowMs: number): boolean {
    const elapsedMs = Math.max(0, nowMs - this.lastMs);
    this.lastMs = nowMs;
    this.tokens = Math.min(this.ratePerSecond, this.tokens + (elapsedMs * this.ratePerSecond) / 1000);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
