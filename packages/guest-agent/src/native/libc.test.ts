import { describe, expect, it } from 'vitest';
import { MADV_DONTNEED, M_MMAP_THRESHOLD, madvise, mallopt, mlock, munlock, nativeAvailable, pageSizeBytes } from './libc.js';

const Growable = SharedArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => SharedArrayBuffer;

describe.skipIf(!nativeAvailable())('libc through koffi', () => {
  it('reports the page size', () => {
    expect(pageSizeBytes()).toBeGreaterThanOrEqual(4096);
  });

  it('locks and unlocks SAB memory, or says it is not permitted', () => {
    const bytes = new Uint8Array(new Growable(1 << 20, { maxByteLength: 1 << 20 }));
    const r = mlock(bytes);
    if (r.ok) expect(munlock(bytes)).toEqual({ ok: true });
    else expect(r).toMatchObject({ failure: 'not_permitted' });
  });

  it('reads errno: madvise on an unaligned start is EINVAL, a typed result, not a crash', () => {
    const bytes = new Uint8Array(new Growable(1 << 20, { maxByteLength: 1 << 20 }));
    expect(madvise(bytes.subarray(16), MADV_DONTNEED)).toMatchObject({ ok: false, failure: 'failed', errno: 22 });
    expect(madvise(bytes, MADV_DONTNEED)).toEqual({ ok: true });
  });

  it('madvise(MADV_DONTNEED) drops the data of a page (it reads zero after)', () => {
    const bytes = new Uint8Array(new Growable(1 << 20, { maxByteLength: 1 << 20 }));
    bytes[4096] = 7;
    expect(madvise(bytes, MADV_DONTNEED).ok).toBe(true);
    expect(bytes[4096]).toBe(0);
  });

  it('tunes the mmap threshold', () => {
    expect(mallopt(M_MMAP_THRESHOLD, 128 * 1024)).toEqual({ ok: true });
  });
});
