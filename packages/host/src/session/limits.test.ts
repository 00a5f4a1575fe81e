import { describe, expect, it } from 'vitest';
import { MAX_FRAME_BYTES } from '@memballoon/protocol';
import { DEFAULT_SESSION_LIMITS, GUEST_MAX_FRAME_BYTES, RateLimiter } from './limits.js';
import { TargetOutbox } from './outbox.js';

describe('RateLimiter', () => {
  it('allows a burst of the rate, then refuses until time refills the bucket', () => {
    const r = new RateLimiter(10, 0);
    let allowed = 0;
    for (let i = 0; i < 50; i++) if (r.take(0)) allowed++;
    expect(allowed).toBe(10);
    expect(r.take(50)).toBe(false); // half a token
    expect(r.take(100)).toBe(true); // one token after 100 ms at 10/s
    expect(r.take(100)).toBe(false);
  });

  it('does not bank more than one second of tokens, and survives a clock going backwards', () => {
    const r = new RateLimiter(5, 0);
    let allowed = 0;
    for (let i = 0; i < 100; i++) if (r.take(60_000)) allowed++;
    expect(allowed).toBe(5);
    expect(r.take(1_000)).toBe(false);
  });
});

describe('default limits', () => {
  it('accept the largest SharedRegion frame and nothing near the protocol ceiling', () => {
    expect(GUEST_MAX_FRAME_BYTES).toBeGreaterThanOrEqual(16_384 * 16);
    expect(DEFAULT_SESSION_LIMITS.maxPayloadBytes).toBeLessThan(MAX_FRAME_BYTES / 2);
    expect(DEFAULT_SESSION_LIMITS.maxHelloBytes).toBeLessThan(DEFAULT_SESSION_LIMITS.maxPayloadBytes);
    expect(DEFAULT_SESSION_LIMITS.coalesceAboveBytes).toBeLessThan(DEFAULT_SESSION_LIMITS.maxBufferedBytes);
  });
});

describe('TargetOutbox', () => {
  it('sends at once while the socket has room', () => {
    const o = new TargetOutbox(1000);
    expect(o.offer({ targetMib: 10, generation: 1 }, 0)).toEqual({ targetMib: 10, generation: 1 });
    expect(o.pending).toBeUndefined();
  });

  it('keeps only the newest target while congested and releases it when drained', () => {
    const o = new TargetOutbox(1000);
    for (let g = 1; g <= 100; g++) expect(o.offer({ targetMib: g, generation: g }, 5000)).toBeUndefined();
    expect(o.pending).toEqual({ targetMib: 100, generation: 100 });
    expect(o.flush(5000)).toBeUndefined();
    expect(o.flush(0)).toEqual({ targetMib: 100, generation: 100 });
    expect(o.flush(0)).toBeUndefined();
  });

  it('never lets an older generation overtake a waiting newer one, nor jump the queue', () => {
    const o = new TargetOutbox(1000);
    o.offer({ targetMib: 7, generation: 7 }, 5000);
    // The socket drained, but a target is still waiting: the new one waits too (order kept).
    expect(o.offer({ targetMib: 3, generation: 3 }, 0)).toBeUndefined();
    expect(o.flush(0)).toEqual({ targetMib: 7, generation: 7 });
  });
});
