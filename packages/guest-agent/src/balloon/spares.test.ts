import { describe, expect, it } from 'vitest';
import { BYTES_PER_MIB } from '@memballoon/protocol';
import { ChunkStack } from './chunk-stack.js';
import { touchPages } from './pages.mjs';
import { SpareChunks } from './spares.js';

const PAGE = 4096;

function memory(sizeMib: number) {
  const sab = new SharedArrayBuffer(sizeMib * BYTES_PER_MIB);
  return { sab, bytes: new Uint8Array(sab), sizeMib };
}

describe('spare chunk memory', () => {
  it('keeps released memory up to its cap, gives back only an exact size, newest first, and trims the oldest', () => {
    const spares = new SpareChunks(3);
    const [a, b, c, d] = [memory(1), memory(1), memory(2), memory(1)];
    spares.put(a);
    spares.put(b);
    spares.put(c); // 1 + 1 + 2 > 3: left to the GC
    expect(spares.spareMib).toBe(2);
    expect(spares.take(2)).toBeNull();
    expect(spares.take(1)?.sab).toBe(b.sab);
    spares.put(d);
    spares.trim(1);
    expect(spares.spareMib).toBe(1);
    expect(spares.take(1)?.sab).toBe(d.sab);
    expect(spares.take(1)).toBeNull();
  });

  it('a chunk stack reuses the memory of deflated chunks (no new mapping), with fresh page words, empty until committed', () => {
    const stack = new ChunkStack(PAGE);
    const first = stack.allocate(4, 1).chunks;
    for (const chunk of first) {
      touchPages(chunk.sab, chunk.seed, PAGE / 4);
      stack.push(chunk, false);
    }
    expect(stack.popNewest(4)).toBe(4);
    expect(stack.spareMib).toBe(4);
    const again = stack.allocate(4, 1).chunks;
    expect(stack.spareMib).toBe(0);
    // The same buffers, newest deflated first out…
    expect(new Set(again.map((c) => c.sab))).toEqual(new Set(first.map((c) => c.sab)));
    // …whose pages were handed back (they read zero), with words of their own.
    for (const chunk of again) expect(new Uint32Array(chunk.sab).some((w) => w !== 0)).toBe(false);
    expect(Math.min(...again.map((c) => c.seed))).toBeGreaterThan(Math.max(...first.map((c) => c.seed)));
    for (const chunk of again) {
      touchPages(chunk.sab, chunk.seed, PAGE / 4);
      stack.push(chunk, false);
    }
    expect(stack.verifyPages()).toBe((4 * BYTES_PER_MIB) / PAGE);
  });
});
