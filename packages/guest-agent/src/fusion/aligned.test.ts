import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { allocateAligned, isPageAligned, toAligned } from './aligned.js';
import { AgentError } from '../errors.js';

// Rss (kB) of every mapping of this process, by address range.
function smapsRssKb(): Map<string, number> {
  const out = new Map<string, number>();
  let range = '';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^([0-9a-f]+-[0-9a-f]+) /.exec(line);
    if (head?.[1]) range = head[1];
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss?.[1] && range) out.set(range, Number(rss[1]));
  }
  return out;
}

const sizeOf = (range: string): number => {
  const [a, b] = range.split('-').map((h) => parseInt(h, 16));
  return (b ?? 0) - (a ?? 0);
};

describe('page-aligned regions', () => {
  it.runIf(process.platform === 'linux')('start on a page boundary, as the kernel sees it (smaps)', () => {
    // An odd size, so the mapping is easy to tell from others.
    const sizeBytes = 3 * 1024 * 1024 + 5 * 4096 + 123;
    const before = smapsRssKb();
    const mem = allocateAligned(sizeBytes);
    const candidates = [...smapsRssKb().keys()].filter((r) => !before.has(r) && sizeOf(r) >= sizeBytes);
    expect(candidates.length).toBeGreaterThan(0);
    // Each new mapping's Rss on its own: V8 may map or trim a heap space of
    // its own meanwhile (seen: one shrank by 3,420 kB between two reads), so
    // the region's mapping is the one that moves by the pages touched.
    const rss = (): number[] => {
      const now = smapsRssKb();
      return candidates.map((r) => now.get(r) ?? 0);
    };
    // Byte 0 and byte 4095 lie in one page only if the start is aligned;
    // byte 4096 then opens the second page.
    const r0 = rss();
    mem.bytes[0] = 1;
    const r1 = rss();
    mem.bytes[4095] = 1;
    const r2 = rss();
    mem.bytes[4096] = 1;
    const r3 = rss();
    const deltas = candidates.map((_, i) => [r1[i]! - r0[i]!, r2[i]! - r1[i]!, r3[i]! - r2[i]!]);
    expect(deltas).toContainEqual([4, 0, 4]);
  });

  it('rounds the mapping up to whole pages and cannot grow', () => {
    const mem = allocateAligned(10_000);
    expect(mem.bytes.byteLength).toBe(10_000);
    expect(mem.buffer.byteLength).toBe(12_288);
    expect(isPageAligned(mem.bytes)).toBe(true);
    expect(mem.copied).toBe(true);
  });

  it('uses aligned memory in place and copies anything else', () => {
    const mem = allocateAligned(8192);
    mem.bytes.fill(7);
    const inPlace = toAligned(mem.bytes);
    expect(inPlace.copied).toBe(false);
    expect(inPlace.bytes).toBe(mem.bytes);

    const buf = Buffer.from('hello, pages');
    const copy = toAligned(buf);
    expect(copy.copied).toBe(true);
    expect(isPageAligned(copy.bytes)).toBe(true);
    expect(Buffer.from(copy.bytes).toString()).toBe('hello, pages');

    // A plain SAB comes from calloc, 16 bytes into its mapping: not aligned.
    const plain = new SharedArrayBuffer(256 * 1024);
    expect(isPageAligned(new Uint8Array(plain))).toBe(false);
    expect(toAligned(plain).copied).toBe(true);
    // A view at an odd offset of an aligned region is not aligned either.
    expect(toAligned(mem.bytes.subarray(100)).copied).toBe(true);
  });

  it('refuses empty or foreign data with invalid_region', () => {
    expect(() => toAligned(new Uint8Array(0))).toThrow(AgentError);
    expect(() => toAligned('text' as unknown as Uint8Array)).toThrow(/Buffer, Uint8Array or SharedArrayBuffer/);
    expect(() => allocateAligned(0)).toThrow(expect.objectContaining({ code: 'invalid_region' }));
  });
});
