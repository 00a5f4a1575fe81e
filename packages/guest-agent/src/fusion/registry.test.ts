import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_PAGES_PER_REGION_FRAME, decodeFrame, encodeFrame, bodies } from '@memballoon/protocol';
import type { MergeAdvisor } from './advise.js';
import { allocateAligned, isPageAligned } from './aligned.js';
import { regionFrames } from './frames.js';
import { createSharedRegionRegistry, type RegistryChange } from './registry.js';
import { parseKsmMergingPages } from './ksm-stats.js';

const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'fusion-registry-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Records every advice instead of calling the kernel; can be told to refuse.
function fakeAdvisor(refuse = false): MergeAdvisor & { calls: Array<{ bytes: number; mergeable: boolean }> } {
  const calls: Array<{ bytes: number; mergeable: boolean }> = [];
  return {
    calls,
    advise(bytes, mergeable) {
      calls.push({ bytes: bytes.byteLength, mergeable });
      return refuse ? { ok: false, message: 'madvise failed with EINVAL' } : { ok: true };
    },
  };
}

describe('shared region registry', () => {
  it('registers data, copying it into page-aligned memory, and announces it', async () => {
    const advisor = fakeAdvisor();
    const reg = await createSharedRegionRegistry({ advisor });
    const changes: RegistryChange[] = [];
    reg.onChange((c) => changes.push(c));
    const data = Buffer.alloc(3 * PAGE + 1, 0x41);
    const h = reg.register({ name: 'model.bin', version: '1', data });
    expect(h.regionId).toBe(1);
    expect(h.sizeBytes).toBe(3 * PAGE + 1);
    expect(h.pageCount).toBe(4);
    expect(h.copied).toBe(true);
    expect(isPageAligned(h.bytes)).toBe(true);
    expect(changes).toEqual([{ type: 'added', region: expect.objectContaining({ regionId: 1, name: 'model.bin' }) }]);
    // Page fusion is off until the host says otherwise: no advice yet.
    expect(advisor.calls).toEqual([]);
    h.release();
    h.release();
    expect(changes.at(-1)).toEqual({ type: 'removed', regionId: 1 });
    expect(changes.length).toBe(2);
    expect(reg.frames()).toEqual([]);
  });

  it('advises every region mergeable when asked, and regions registered later too', async () => {
    const advisor = fakeAdvisor();
    const reg = await createSharedRegionRegistry({ advisor });
    const a = reg.register({ name: 'a', version: '1', data: Buffer.alloc(PAGE, 1) });
    expect(reg.setMergeable(true)).toEqual({ wanted: true, mergeableRegions: 1, regions: 1, detail: '' });
    expect(a.mergeable).toBe(true);
    const own = allocateAligned(2 * PAGE);
    const b = reg.register({ name: 'b', version: '1', data: own.bytes });
    expect(b.copied).toBe(false);
    expect(b.mergeable).toBe(true);
    expect(reg.frames().every((f) => f.mergeable)).toBe(true);
    // The caller's own memory is handed back unmerged; our copies are just dropped.
    b.release();
    expect(advisor.calls).toEqual([
      { bytes: PAGE, mergeable: true },
      { bytes: 2 * PAGE, mergeable: true },
      { bytes: 2 * PAGE, mergeable: false },
    ]);
  });

  it('reports a refused advice instead of throwing', async () => {
    const reg = await createSharedRegionRegistry({ advisor: fakeAdvisor(true) });
    reg.register({ name: 'a', version: '1', data: Buffer.alloc(PAGE, 1) });
    const state = reg.setMergeable(true);
    expect(state.mergeableRegions).toBe(0);
    expect(state.detail).toMatch(/region 'a': madvise failed with EINVAL/);
    expect(reg.frames()[0]?.mergeable).toBe(false);
  });

  it('loads a file into page-aligned memory (--share-file)', async () => {
    const path = join(dir, 'libfoo.so');
    const content = Buffer.alloc(5 * PAGE + 17);
    for (let i = 0; i < content.length; i++) content[i] = (i * 31) & 0xff;
    writeFileSync(path, content);
    const reg = await createSharedRegionRegistry({ advisor: fakeAdvisor() });
    const h = reg.registerFile(path);
    expect(h.name).toBe('libfoo.so');
    expect(h.version).toMatch(/^\d+-\d+$/);
    expect(isPageAligned(h.bytes)).toBe(true);
    expect(Buffer.from(h.bytes).equals(content)).toBe(true);
    // Same content registered from a Buffer hashes the same.
    const viaBuffer = reg.register({ name: 'x', version: '1', data: content });
    const [f1] = reg.framesOf(h.regionId);
    const [f2] = reg.framesOf(viaBuffer.regionId);
    expect(Buffer.from(f1!.pageHashes).equals(Buffer.from(f2!.pageHashes))).toBe(true);
    expect(() => reg.registerFile(join(dir, 'missing'))).toThrow(expect.objectContaining({ code: 'file_unreadable' }));
    writeFileSync(join(dir, 'empty'), '');
    expect(() => reg.registerFile(join(dir, 'empty'))).toThrow(expect.objectContaining({ code: 'invalid_region' }));
    expect(() => reg.registerFile(dir)).toThrow(expect.objectContaining({ code: 'file_unreadable' }));
  });

  it('refuses a region without a name', async () => {
    const reg = await createSharedRegionRegistry({ advisor: fakeAdvisor() });
    expect(() => reg.register({ name: '', version: '1', data: Buffer.alloc(1) })).toThrow(expect.objectContaining({ code: 'invalid_region' }));
  });
});

describe('SharedRegion frames', () => {
  it('split a large region at MAX_PAGES_PER_REGION_FRAME and pass the codec', () => {
    // Hashes only (16 bytes a page): the region's memory is not needed here.
    const pageCount = MAX_PAGES_PER_REGION_FRAME * 2 + 3;
    const hashes = { pageCount, pageHashes: new Uint8Array(pageCount * 8).fill(1), confirmHashes: new Uint8Array(pageCount * 8).fill(2) };
    const sizeBytes = pageCount * PAGE - 100;
    const frames = regionFrames({ regionId: 9, name: 'big', version: 'v', sizeBytes, pageSizeBytes: PAGE, mergeable: false }, hashes);
    expect(frames.map((f) => [f.firstPage, f.pageHashes.byteLength / 8, f.last])).toEqual([
      [0, MAX_PAGES_PER_REGION_FRAME, false],
      [MAX_PAGES_PER_REGION_FRAME, MAX_PAGES_PER_REGION_FRAME, false],
      [2 * MAX_PAGES_PER_REGION_FRAME, 3, true],
    ]);
    // Every frame is one the host's decoder accepts, the full ones included.
    let seq = 1;
    for (const f of frames) {
      const back = decodeFrame(encodeFrame(seq++, bodies.sharedRegion(f)));
      expect(back.body).toMatchObject({ case: 'sharedRegion', value: { firstPage: f.firstPage, sizeBytes } });
    }
  });
});

describe('ksm_merging_pages', () => {
  it('parses both kernel formats', () => {
    expect(parseKsmMergingPages('8192\n')).toBe(8192);
    expect(parseKsmMergingPages('ksm_rmap_items 10\nksm_merging_pages 7\nksm_process_profit 1\n')).toBe(7);
    expect(parseKsmMergingPages('')).toBeNull();
  });
});
