import { hash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HostError } from '../errors.js';
import { SessionHints } from './hints.js';
import { SharingTable, type RegionHint } from './table.js';

const PAGE = 4096;
const MIB_PAGES = 256;

// Page contents are described by (seed, index) and made one page at a time,
// so a 32 MiB region costs 4 KiB of test memory, not 32 MiB: the tag
// "seed:index" at the start, zeros after it.
function page(seed: string, i: number): Uint8Array {
  const p = new Uint8Array(PAGE);
  p.set(Buffer.from(`${seed}:${i}`));
  return p;
}

type Hash64 = (p: Uint8Array) => Uint8Array;
const sha256_64: Hash64 = (p) => hash('sha256', p, 'buffer').subarray(0, 8);
const sha1_64: Hash64 = (p) => hash('sha1', p, 'buffer').subarray(0, 8);

function region(regionId: number, name: string, pages: Array<[string, number]>, opts: { primary?: Hash64; mergeable?: boolean } = {}): RegionHint {
  const primary = opts.primary ?? sha1_64;
  const pageHashes = new Uint8Array(pages.length * 8);
  const confirmHashes = new Uint8Array(pages.length * 8);
  pages.forEach(([seed, i], n) => {
    const p = page(seed, i);
    pageHashes.set(primary(p), n * 8);
    confirmHashes.set(sha256_64(p), n * 8);
  });
  return { regionId, name, version: '1', sizeBytes: pages.length * PAGE, pageSizeBytes: PAGE, pageHashes, confirmHashes, mergeable: opts.mergeable ?? false };
}

const range = (seed: string, n: number, from = 0): Array<[string, number]> => Array.from({ length: n }, (_, i) => [seed, from + i]);

describe('sharing table', () => {
  it('finds the common 32 MiB of three guests sharable and their private regions not', () => {
    const table = new SharingTable();
    const common = region(1, 'libcommon.so', range('common', 32 * MIB_PAGES));
    for (const vm of ['a', 'b', 'c']) {
      table.putRegion(vm, common);
      table.putRegion(vm, region(2, `private-${vm}`, range(`private-${vm}`, 4 * MIB_PAGES)));
    }
    for (const vm of ['a', 'b', 'c']) {
      expect(table.vm(vm)).toEqual({ regions: 2, hintedPages: 36 * MIB_PAGES, hintedMib: 36, sharableMib: 32, mergeableSharableMib: 0 });
    }
    // Host-wide, 3 x 32 MiB are sharable; merging keeps one copy: 64 MiB saved.
    expect(table.host()).toEqual({ vms: 3, hintedMib: 108, sharableMib: 96, savingMib: 64, mergeableSharableMib: 0, mergeableSavingMib: 0 });

    // A guest leaves: the other two still share; then one more leaves: nobody does.
    table.removeVm('c');
    expect(table.vm('c').sharableMib).toBe(0);
    expect(table.vm('a').sharableMib).toBe(32);
    expect(table.host()).toMatchObject({ sharableMib: 64, savingMib: 32 });
    table.removeRegion('b', 1);
    expect(table.vm('a').sharableMib).toBe(0);
    expect(table.vm('b')).toMatchObject({ regions: 1, sharableMib: 0, hintedMib: 4 });
    expect(table.host()).toEqual({ vms: 2, hintedMib: 40, sharableMib: 0, savingMib: 0, mergeableSharableMib: 0, mergeableSavingMib: 0 });
  });

  it('counts partly overlapping regions page by page', () => {
    const table = new SharingTable();
    table.putRegion('a', region(1, 'data', range('d', 100)));
    table.putRegion('b', region(1, 'data', range('d', 100, 60))); // pages 60..159
    expect(table.vm('a').sharableMib).toBeCloseTo(40 / MIB_PAGES);
    expect(table.vm('b').sharableMib).toBeCloseTo(40 / MIB_PAGES);
    expect(table.host().sharableMib).toBeCloseTo(80 / MIB_PAGES);
    expect(table.host().savingMib).toBeCloseTo(40 / MIB_PAGES);
  });

  it('never counts pages that collide on the primary hash but differ', () => {
    // A deliberately weak primary: the first 8 bytes of the page. Pages
    // 'x:1'… and 'x:1'+other text start alike, so they collide on it.
    const weak: Hash64 = (p) => p.subarray(0, 8);
    const a: Array<[string, number]> = [
      ['collide', 10],
      ['collide', 11],
      ['same', 1],
    ];
    const b: Array<[string, number]> = [
      ['collide', 12],
      ['collide', 13],
      ['same', 1],
    ];
    const ra = region(1, 'r', a, { primary: weak });
    const rb = region(1, 'r', b, { primary: weak });
    // The primary hashes do collide…
    expect(Buffer.from(ra.pageHashes.subarray(0, 8)).equals(Buffer.from(rb.pageHashes.subarray(0, 8)))).toBe(true);
    expect(Buffer.from(ra.confirmHashes.subarray(0, 8)).equals(Buffer.from(rb.confirmHashes.subarray(0, 8)))).toBe(false);
    const table = new SharingTable();
    table.putRegion('a', ra);
    table.putRegion('b', rb);
    // …yet only the one truly identical page counts.
    expect(table.vm('a').sharableMib * MIB_PAGES).toBeCloseTo(1);
    expect(table.vm('b').sharableMib * MIB_PAGES).toBeCloseTo(1);
  });

  it('counts duplicates inside one guest only once another guest holds the content', () => {
    const table = new SharingTable();
    table.putRegion(
      'a',
      region(1, 'zeros', [
        ['z', 0],
        ['z', 0],
        ['z', 0],
      ]),
    );
    expect(table.vm('a').sharableMib).toBe(0);
    table.putRegion('b', region(1, 'zeros', [['z', 0]]));
    expect(table.vm('a').sharableMib * MIB_PAGES).toBeCloseTo(3);
    expect(table.vm('b').sharableMib * MIB_PAGES).toBeCloseTo(1);
    expect(table.host().sharableMib * MIB_PAGES).toBeCloseTo(4);
    expect(table.host().savingMib * MIB_PAGES).toBeCloseTo(1);
    table.removeVm('b');
    expect(table.host().sharableMib).toBe(0);
    expect(table.vm('a').sharableMib).toBe(0);
  });

  it('keeps mergeable regions apart: KSM can merge only what both sides advised', () => {
    const table = new SharingTable();
    table.putRegion('a', region(1, 'm', range('m', MIB_PAGES), { mergeable: true }));
    table.putRegion('b', region(1, 'm', range('m', MIB_PAGES), { mergeable: true }));
    table.putRegion('c', region(1, 'm', range('m', MIB_PAGES), { mergeable: false }));
    expect(table.vm('a')).toMatchObject({ sharableMib: 1, mergeableSharableMib: 1 });
    expect(table.vm('c')).toMatchObject({ sharableMib: 1, mergeableSharableMib: 0 });
    expect(table.host()).toMatchObject({ sharableMib: 3, savingMib: 2, mergeableSharableMib: 2, mergeableSavingMib: 1 });
  });

  it('replaces a region sent again under the same id', () => {
    const table = new SharingTable();
    table.putRegion('a', region(1, 'r', range('x', 10)));
    table.putRegion('b', region(1, 'r', range('x', 10)));
    table.putRegion('a', region(1, 'r', range('y', 10)));
    expect(table.vm('a')).toMatchObject({ regions: 1, hintedPages: 10, sharableMib: 0 });
    expect(table.vm('b').sharableMib).toBe(0);
  });

  it('refuses hints beyond the per-VM cap with a clear error and keeps what it had', () => {
    const table = new SharingTable({ maxHintedPagesPerVm: 100 });
    table.putRegion('a', region(1, 'r1', range('x', 60)));
    let caught: unknown;
    try {
      table.putRegion('a', region(2, 'r2', range('y', 50)));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(HostError);
    expect(caught).toMatchObject({ code: 'too_many_pages', wireCode: 'out_of_range' });
    expect((caught as Error).message).toMatch(/VM 'a' would hint 110 pages with region 'r2', above the host's limit of 100 pages per VM/);
    expect(table.vm('a').hintedPages).toBe(60);
    // Another VM has its own budget; replacing a region counts only the difference.
    table.putRegion('b', region(1, 'r1', range('x', 100)));
    table.putRegion('a', region(1, 'r1', range('x', 100)));
    expect(table.vm('a').sharableMib * MIB_PAGES).toBeCloseTo(100);
  });

  it('refuses malformed regions', () => {
    const table = new SharingTable();
    const r = region(1, 'r', range('x', 3));
    expect(() => table.putRegion('a', { ...r, sizeBytes: 10 * PAGE })).toThrow(expect.objectContaining({ code: 'invalid_region' }));
    expect(() => table.putRegion('a', { ...r, pageSizeBytes: 1000 })).toThrow(expect.objectContaining({ code: 'invalid_region' }));
    expect(() => table.putRegion('a', { ...r, confirmHashes: r.confirmHashes.subarray(8) })).toThrow(expect.objectContaining({ code: 'invalid_region' }));
  });
});

describe('session hints', () => {
  // The frames a guest sends for a region, split every `perFrame` pages.
  function frames(r: RegionHint, perFrame: number) {
    const pages = r.pageHashes.byteLength / 8;
    const out = [];
    for (let first = 0; first < pages; first += perFrame) {
      const end = Math.min(pages, first + perFrame);
      out.push({
        regionId: r.regionId,
        name: r.name,
        version: r.version,
        sizeBytes: r.sizeBytes,
        pageSizeBytes: r.pageSizeBytes,
        mergeable: r.mergeable,
        firstPage: first,
        pageHashes: r.pageHashes.subarray(first * 8, end * 8),
        confirmHashes: r.confirmHashes.subarray(first * 8, end * 8),
        last: end === pages,
      });
    }
    return out;
  }

  it('puts split frames together and counts the region once it is complete', () => {
    const table = new SharingTable();
    const a = new SessionHints(table, 'a');
    const b = new SessionHints(table, 'b');
    const r = region(7, 'lib', range('lib', 1000));
    for (const f of frames(r, 300)) expect(a.onSharedRegion(f)).toBe(f.last);
    expect(a.sharing().hintedPages).toBe(1000);
    const [f0, f1, f2, f3] = frames(r, 300);
    b.onSharedRegion(f0!);
    b.onSharedRegion(f1!);
    expect(b.sharing().hintedPages).toBe(0);
    b.onSharedRegion(f2!);
    b.onSharedRegion(f3!);
    expect(a.sharing().sharableMib * MIB_PAGES).toBeCloseTo(1000);
    b.onSharedRegionRemoved({ regionId: 7 });
    expect(a.sharing().sharableMib).toBe(0);
    a.close();
    expect(table.host().vms).toBe(0);
  });

  it('refuses a gap or a change between frames, and a region beyond the cap while it arrives', () => {
    const table = new SharingTable({ maxHintedPagesPerVm: 500 });
    const s = new SessionHints(table, 'a');
    const [f0, , f2] = frames(region(1, 'r', range('r', 300)), 100);
    s.onSharedRegion(f0!);
    expect(() => s.onSharedRegion(f2!)).toThrow(/jumps from page 100 to 200/);
    expect(() => s.onSharedRegion({ ...f0!, firstPage: 100 })).toThrow(/starts at page 100, not 0/);
    s.onSharedRegion(f0!);
    expect(() => s.onSharedRegion({ ...f2!, firstPage: 100, version: '2' })).toThrow(/changed its name, version/);
    const big = frames(region(2, 'big', range('b', 600)), 200);
    s.onSharedRegion(big[0]!);
    s.onSharedRegion(big[1]!);
    expect(() => s.onSharedRegion(big[2]!)).toThrow(expect.objectContaining({ code: 'too_many_pages' }));
    expect(table.vm('a').hintedPages).toBe(0);
  });
});
