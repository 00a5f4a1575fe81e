// Per-connection limits of guest sessions, in one place so that hardening can
// tighten them without hunting through the session code.
import { MAX_PAGES_PER_REGION_FRAME, PAGE_HASH_BYTES } from '@memballoon/protocol';

/**
 * The largest frame a guest has reason to send: a SharedRegion with the most
 * pages a frame may carry (two hashes a page), plus room for its name,
 * version and framing. Everything else a guest sends is under 2 KiB; the
 * protocol's MAX_FRAME_BYTES (1 MiB) is the ceiling, not what we accept.
 */
export const GUEST_MAX_FRAME_BYTES = MAX_PAGES_PER_REGION_FRAME * PAGE_HASH_BYTES * 2 + 8 * 1024;

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
  /** Largest first frame (Hello: a name, a token and a few short strings), checked before it is decoded. */
  maxHelloBytes: number;
  /** Outbound bytes queued above which a new target waits (latest wins) instead of queueing behind the others. */
  coalesceAboveBytes: number;
  /** Host-wide: connections that have not sent Hello yet; beyond, the oldest of the address holding the most is closed (see pending.ts). */
  maxPendingConnections: number;
  /** Host-wide: log lines per second that guests can cause, all sessions together; beyond, they are dropped and counted (a flood must not fill the disk). */
  maxGuestLogLinesPerSecond: number;
  /** Host-wide: guest-caused log lines allowed at once, above the steady rate (many guests reconnecting after a restart). */
  guestLogBurstLines: number;
}

/** The defaults: generous for a healthy agent (a status every 100 ms plus stats), tight for a flood. */
export const DEFAULT_SESSION_LIMITS: Readonly<SessionLimits> = Object.freeze({
  maxPayloadBytes: GUEST_MAX_FRAME_BYTES,
  helloTimeoutMs: 5_000,
  maxMessagesPerSecond: 200,
  heartbeatIntervalMs: 2_000,
  missedHeartbeats: 3,
  statsIntervalMs: 1_000,
  maxBufferedBytes: 4 * 1024 * 1024,
  maxHelloBytes: 16 * 1024,
  coalesceAboveBytes: 64 * 1024,
  maxPendingConnections: 256,
  maxGuestLogLinesPerSecond: 20,
  guestLogBurstLines: 200,
});

/** A token bucket: refills at `ratePerSecond`, holds at most `burst` (default: one second's worth). */
export class RateLimiter {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly ratePerSecond: number,
    nowMs: number,
    private readonly burst: number = ratePerSecond,
  ) {
    this.tokens = burst;
    this.lastMs = nowMs;
  }

  /** Takes one token; false when the bucket is empty. */
  take(nowMs: number): boolean {
    const elapsedMs = Math.max(0, nowMs - this.lastMs);
    this.lastMs = nowMs;
    this.tokens = Math.min(this.burst, this.tokens + (elapsedMs * this.ratePerSecond) / 1000);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
