import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KEY_WORDS, PageIndex } from './index-of-pages.js';

// The naive model: per content key, copies per VM; every answer recomputed.
function model(ops: Array<{ add: boolean; vm: number; key: number }>) {
  const held = new Map<number, Map<number, number>>();
  for (const op of ops) {
    const m = held.get(op.key) ?? new Map<number, number>();
    const c = m.get(op.vm) ?? 0;
    if (op.add) m.set(op.vm, c + 1);
    else if (c > 1) m.set(op.vm, c - 1);
    else m.delete(op.vm);
    if (m.size > 0) held.set(op.key, m);
    else held.delete(op.key);
  }
  const sharable = [0, 0, 0, 0];
  let saving = 0;
  for (const m of held.values()) {
    if (m.size < 2) continue;
    saving += m.size - 1;
    for (const [vm, c] of m) sharable[vm]! += c;
  }
  return { sharable, saving, contents: held.size };
}

// Keys whose primary hash is deliberately weak (few values) so that probing
// clusters, while the confirming hash tells them apart.
function words(key: number): Uint32Array {
  return Uint32Array.of(key % 7, 0, Math.imul(key, 0x9e3779b1) >>> 0, key);
}

describe('page index', () => {
  it('agrees with a naive recount after any sequence of adds and removes (with resizes and deletions)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ add: fc.boolean(), vm: fc.integer({ min: 0, max: 3 }), key: fc.integer({ min: 0, max: 2500 }) }), {
          minLength: 1,
          maxLength: 4000,
        }),
        (ops) => {
          const index = new PageIndex();
          for (const op of ops) (op.add ? index.add : index.remove).call(index, op.vm, words(op.key), 0, 12);
          const want = model(ops);
          for (let vm = 0; vm < 4; vm++) expect(index.sharableBytes(vm)).toBe(want.sharable[vm]! * 4096);
          expect(index.savingBytes()).toBe(want.saving * 4096);
          expect(index.totalSharableBytes()).toBe(want.sharable.reduce((s, n) => s + n, 0) * 4096);
          expect(index.contents()).toBe(want.contents);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('grows past its first capacity and empties again', () => {
    const index = new PageIndex();
    const n = 5000;
    const all = new Uint32Array(n * KEY_WORDS);
    for (let i = 0; i < n; i++) all.set(words(i), i * KEY_WORDS);
    for (const vm of [0, 1]) for (let i = 0; i < n; i++) index.add(vm, all, i * KEY_WORDS, 12);
    expect(index.contents()).toBe(n);
    expect(index.sharableBytes(0)).toBe(n * 4096);
    for (let i = 0; i < n; i++) index.remove(1, all, i * KEY_WORDS, 12);
    expect(index.sharableBytes(0)).toBe(0);
    for (let i = 0; i < n; i++) index.remove(0, all, i * KEY_WORDS, 12);
    expect(index.contents()).toBe(0);
  });
});
