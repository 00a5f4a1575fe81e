// The session's heartbeat rule, on a stand-in socket and a sweep driven by
// hand: a ping only after 1.5 intervals in which the host wrote nothing, and
// a guest silent for 3 intervals is terminated. Counts, not time (the sweep
// is driven with chosen clock readings).
import { EventEmitter } from 'node:events';
import { GUEST_SUBPROTOCOL } from '@memballoon/protocol';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import type { HostService } from '../service/host-service.js';
import { GuestSession } from './guest-session.js';
import { HeartbeatSweep } from './heartbeat.js';
import { DEFAULT_SESSION_LIMITS } from './limits.js';

class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly protocol = GUEST_SUBPROTOCOL;
  pings = 0;
  terminated = false;
  ping(): void {
    this.pings++;
  }
  send(): void {}
  close(): void {
    this.readyState = 3;
  }
  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
  }
}

describe('GuestSession heartbeat', () => {
  it('pings after 1.5 silent intervals (not 1), and ends a guest silent for 3 intervals', () => {
    const intervalMs = 1_000;
    const sweep = new HeartbeatSweep(intervalMs, () => 0);
    const ws = new FakeSocket();
    // The session reads the clock itself: bracket its birth, so that each
    // beat below is silent enough (or not) however slow the machine is.
    const beforeMs = Date.now();
    const session = new GuestSession(ws as unknown as WebSocket, {
      service: { closeSession() {} } as unknown as HostService,
      limits: { ...DEFAULT_SESSION_LIMITS, heartbeatIntervalMs: intervalMs, missedHeartbeats: 3, helloTimeoutMs: 60_000 },
      logger: pino({ level: 'silent' }),
      heartbeat: sweep,
    });
    const afterMs = Date.now();
    expect(sweep.size).toBe(1);
    session.beat(beforeMs + 1.2 * intervalMs);
    expect(ws.pings).toBe(0);
    session.beat(afterMs + 1.6 * intervalMs);
    expect(ws.pings).toBe(1);
    // The ping counts as the host's word: the next is due 1.5 intervals after it.
    session.beat(beforeMs + 2.9 * intervalMs);
    expect(ws.pings).toBe(1);
    expect(ws.terminated).toBe(false);
    // Nothing from the guest for more than 3 intervals: terminated, and it leaves the sweep.
    session.beat(Date.now() + 3.1 * intervalMs);
    expect(ws.terminated).toBe(true);
    expect(ws.pings).toBe(1);
    expect(sweep.size).toBe(0);
  });
});
