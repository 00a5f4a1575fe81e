import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  MADV_DONTNEED,
  MADV_POPULATE_WRITE,
  M_MMAP_THRESHOLD,
  madvise,
  mallopt,
  mlock,
  mlockOnFault,
  munlock,
  nativeAvailable,
  pageSizeBytes,
} from './libc.js';

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

  it('mlockOnFault marks a range locked without faulting it in; populating it then pins its pages (or it says why not)', () => {
    const kib = (key: string, file = '/proc/self/status'): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(file, 'utf8'))![1]);
    const bytes = new Uint8Array(new Growable(4 << 20, { maxByteLength: 4 << 20 }));
    const lockedBefore = kib('VmLck');
    const pinnedBefore = kib('Locked', '/proc/self/smaps_rollup');
    const r = mlockOnFault(bytes);
    if (!r.ok) {
      expect(['not_permitted', 'unavailable']).toContain(r.failure);
      return;
    }
    try {
      // The range counts as locked at once; none of its pages is there yet.
      expect(kib('VmLck') - lockedBefore).toBe(4096);
      expect(kib('Locked', '/proc/self/smaps_rollup') - pinnedBefore).toBe(0);
      expect(madvise(bytes, MADV_POPULATE_WRITE)).toEqual({ ok: true });
      expect(kib('Locked', '/proc/self/smaps_rollup') - pinnedBefore).toBe(4096);
    } finally {
      munlock(bytes);
      madvise(bytes, MADV_DONTNEED);
    }
    expect(kib('VmLck')).toBe(lockedBefore);
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
