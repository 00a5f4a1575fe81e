// The host's one error type: a closed code set, one table for HTTP statuses
// and wire codes, and from() that keeps the cause.
import { ERROR_CODES } from '@memballoon/protocol';
import { describe, expect, it } from 'vitest';
import { CgroupError } from './cgroup/errors.js';
import { HOST_ERROR_CODES, HTTP_STATUS_OF, HostError, isHostErrorCode, WIRE_CODE_OF } from './errors.js';

describe('HostError', () => {
  it('maps every code to an HTTP status and a protocol code, in one table', () => {
    for (const code of HOST_ERROR_CODES) {
      expect(HTTP_STATUS_OF[code]).toBeGreaterThanOrEqual(400);
      expect(ERROR_CODES).toContain(WIRE_CODE_OF[code]);
      const e = new HostError(code, 'x');
      expect([e.httpStatus, e.wireCode]).toEqual([HTTP_STATUS_OF[code], WIRE_CODE_OF[code]]);
    }
    expect(HTTP_STATUS_OF.pool_exhausted).toBe(409);
    expect(WIRE_CODE_OF.too_many_pages).toBe('out_of_range');
  });

  it('knows its codes and nothing else', () => {
    expect(isHostErrorCode('not_found')).toBe(true);
    for (const v of ['error', 'toString', '__proto__', '', 404, undefined]) expect(isHostErrorCode(v)).toBe(false);
  });

  it('normalises anything thrown, keeping the cause', () => {
    const plain = new Error('boom');
    expect(HostError.from(plain)).toMatchObject({ code: 'internal', message: 'boom', cause: plain });
    expect(HostError.from('text', 'ksm_io')).toMatchObject({ code: 'ksm_io', message: 'text' });
    const sqlite = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    expect(HostError.from(sqlite)).toMatchObject({ code: 'storage', cause: sqlite });
    const cg = new CgroupError('limit_below_usage', 'would reclaim');
    expect(HostError.from(cg)).toMatchObject({ code: 'out_of_range', message: 'would reclaim', cause: cg });
    const same = new HostError('usage', 'u');
    expect(HostError.from(same)).toBe(same);
  });
});
