import { describe, expect, it } from 'vitest';
import { allocateAligned } from './aligned.js';
import { createPageHasher, loadXxh64, PAGE_HASH_BYTES, type PageHashFn } from './hashing.js';

const PAGE = 4096;

// Deterministic, page-distinct content (a small LCG), so runs are comparable.
function content(pages: number, seed: number): Uint8Array {
  const mem = allocateAligned(pages * PAGE);
  const words = new Uint32Array(mem.buffer);
  let x = seed >>> 0;
  for (let i = 0; i < words.length; i++) words[i] = x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
  return mem.bytes;
}

const hashAt = (hashes: Uint8Array, page: number): string => Buffer.from(hashes.subarray(page * PAGE_HASH_BYTES, (page + 1) * PAGE_HASH_BYTES)).toString('hex');

describe('page hashing', () => {
  it('is stable: the same pages give the same hashes (and known XXH64 values)', async () => {
    const hasher = await createPageHasher();
    const a = hasher.hashPages(content(64, 1));
    const b = (await createPageHasher()).hashPages(content(64, 1));
    expect(Buffer.from(a.pageHashes).equals(Buffer.from(b.pageHashes))).toBe(true);
    expect(Buffer.from(a.confirmHashes).equals(Buffer.from(b.confirmHashes))).toBe(true);
    // XXH64 of the empty input, seed 0 (the C implementation's reference
    // value), little-endian as on the wire: ties the primary to the
    // algorithm, not to this run.
    const xxh64 = await loadXxh64();
    const out = new DataView(new ArrayBuffer(8));
    xxh64(new Uint8Array(0), out, 0);
    expect(out.getBigUint64(0, true)).toBe(0xef46db3751d8e999n);
  });

  it('gives different pages different hashes, under both hashes', async () => {
    const hasher = await createPageHasher();
    const pages = 1024;
    const h = hasher.hashPages(content(pages, 42));
    expect(h.pageCount).toBe(pages);
    expect(h.pageHashes.byteLength).toBe(pages * PAGE_HASH_BYTES);
    const primary = new Set<string>();
    const confirm = new Set<string>();
    for (let p = 0; p < pages; p++) {
      primary.add(hashAt(h.pageHashes, p));
      confirm.add(hashAt(h.confirmHashes, p));
    }
    expect(primary.size).toBe(pages);
    expect(confirm.size).toBe(pages);
    // The two hashes are independent functions, not one value twice.
    expect(hashAt(h.pageHashes, 0)).not.toBe(hashAt(h.confirmHashes, 0));
  });

  it('changes the hash of exactly the page that changed', async () => {
    const hasher = await createPageHasher();
    const bytes = content(16, 7);
    const before = hasher.hashPages(bytes);
    bytes[5 * PAGE + 100] = (bytes[5 * PAGE + 100] ?? 0) ^ 0xff;
    const after = hasher.hashPages(bytes);
    for (let p = 0; p < 16; p++) {
      expect(hashAt(after.pageHashes, p) === hashAt(before.pageHashes, p)).toBe(p !== 5);
      expect(hashAt(after.confirmHashes, p) === hashAt(before.confirmHashes, p)).toBe(p !== 5);
    }
  });

  it('hashes a partial last page as the zero-padded page in memory', async () => {
    const hasher = await createPageHasher();
    const full = allocateAligned(2 * PAGE);
    full.bytes.fill(9, 0, PAGE + 10);
    const partial = allocateAligned(PAGE + 10);
    partial.bytes.fill(9);
    const a = hasher.hashPages(full.bytes);
    const b = hasher.hashPages(partial.bytes);
    expect(b.pageCount).toBe(2);
    expect(Buffer.from(b.pageHashes).equals(Buffer.from(a.pageHashes))).toBe(true);
    expect(Buffer.from(b.confirmHashes).equals(Buffer.from(a.confirmHashes))).toBe(true);
  });

  it('takes an injected primary hash (tests use a deliberately weak one)', async () => {
    const weak: PageHashFn = (page, out, at) => out.setBigUint64(at, BigInt(page[0] ?? 0), true);
    const hasher = await createPageHasher({ primary: weak });
    const bytes = content(4, 3);
    bytes[0] = 5;
    bytes[PAGE] = 5;
    const h = hasher.hashPages(bytes);
    expect(hashAt(h.pageHashes, 0)).toBe(hashAt(h.pageHashes, 1));
    expect(hashAt(h.confirmHashes, 0)).not.toBe(hashAt(h.confirmHashes, 1));
  });
});
