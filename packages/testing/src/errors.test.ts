// A test suite that points launchGuest at a host that is not there gets a
// TestingError whose message fits a library: what failed and where, no
// balloonctl flag (--host, MEMBALLOON_URL) that means nothing to its caller.
import { describe, expect, it } from 'vitest';
import { TestingError } from './errors.js';
import { launchGuest } from './guest.js';

describe('launchGuest against an unreachable host', () => {
  it('rejects with host_refused, the API code unreachable, and no CLI hint', async () => {
    const err = await launchGuest({ memoryMib: 128, command: ['sleep', '1'], host: { url: 'http://127.0.0.1:1', adminToken: 't' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TestingError);
    expect(err).toMatchObject({ code: 'host_refused', apiCode: 'unreachable' });
    expect((err as Error).message).toBe('cannot reach the host at http://127.0.0.1:1 (ECONNREFUSED): is balloon-host running there?');
  });
});
