import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from './backoff.js';
import { guestEndpoint } from './url.js';

describe('backoff', () => {
  it('grows exponentially, is jittered within [half, full], and is capped', () => {
    expect(backoffDelayMs(1, { baseMs: 100 }, 0, () => 0)).toBe(50);
    expect(backoffDelayMs(1, { baseMs: 100 }, 0, () => 1)).toBe(100);
    expect(backoffDelayMs(4, { baseMs: 100 }, 0, () => 1)).toBe(800);
    expect(backoffDelayMs(40, { baseMs: 100, maxMs: 5000 }, 0, () => 1)).toBe(5000);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.double({ min: 0, max: 1, noNaN: true }), (attempt, r) => {
        const d = backoffDelayMs(attempt, {}, 0, () => r);
        return d >= 125 && d <= 30_000;
      }),
    );
  });
  it("takes the host's retryAfterMs as a lower bound", () => {
    expect(backoffDelayMs(1, { baseMs: 100 }, 7000, () => 0)).toBe(7000);
  });
});

describe('guest endpoint', () => {
  it('maps http→ws and https→wss and appends /v1/guest', () => {
    expect(guestEndpoint('http://127.0.0.1:7450')).toBe('ws://127.0.0.1:7450/v1/guest');
    expect(guestEndpoint('https://h.example/base/')).toBe('wss://h.example/base/v1/guest');
  });
  it('refuses other schemes and garbage', () => {
    expect(() => guestEndpoint('ftp://x')).toThrowError(expect.objectContaining({ code: 'invalid_config' }));
    expect(() => guestEndpoint('not a url')).toThrowError(expect.objectContaining({ code: 'invalid_config' }));
  });
});
