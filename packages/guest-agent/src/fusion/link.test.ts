import { describe, expect, it, vi } from 'vitest';
import type { Body } from '@memballoon/protocol';
import { FUSION_FRAMES_PER_WINDOW, FUSION_WINDOW_MS, FusionLink } from './link.js';
import { createSharedRegionRegistry } from './registry.js';

const PAGE = 4096;

describe('fusion link', () => {
  it('sends every region after each Welcome, and changes while connected only', async () => {
    const advised: boolean[] = [];
    const reg = await createSharedRegionRegistry({ advisor: { advise: (_b, m) => (advised.push(m), { ok: true }) } });
    const states: Array<[number, boolean]> = [];
    const link = new FusionLink(reg, { onMergeState: (st, pf) => states.push([st.mergeableRegions, pf]) });
    const a = reg.register({ name: 'a', version: '1', data: Buffer.alloc(2 * PAGE, 1) });
    const sent: Body[] = [];
    const send = (b: Body): boolean => (sent.push(b), true);

    expect(link.welcomed(true, send).mergeableRegions).toBe(1);
    expect(sent.map((b) => b.case)).toEqual(['sharedRegion']);
    expect(sent[0]).toMatchObject({ value: { regionId: a.regionId, mergeable: true, last: true } });

    const b = reg.register({ name: 'b', version: '1', data: Buffer.alloc(PAGE, 2) });
    b.release();
    expect(sent.map((x) => x.case)).toEqual(['sharedRegion', 'sharedRegion', 'sharedRegionRemoved']);

    // Disconnected: nothing goes out; the next Welcome resends what is held.
    link.disconnected();
    reg.register({ name: 'c', version: '1', data: Buffer.alloc(PAGE, 3) });
    expect(sent.length).toBe(3);
    sent.length = 0;
    link.welcomed(false, send);
    expect(sent.map((x) => (x.case === 'sharedRegion' ? x.value.name : x.case))).toEqual(['a', 'c']);
    expect(sent.every((x) => x.case === 'sharedRegion' && !x.value.mergeable)).toBe(true);
    // Page fusion turned off for this VM: the regions were advised unmergeable again.
    expect(advised.at(-1)).toBe(false);

    expect(states).toEqual([
      [1, true],
      [0, false],
    ]);
    link.close();
    expect(reg.regions()).toEqual([]);
  });
});

describe('fusion link pacing', () => {
  it('sends at most FUSION_FRAMES_PER_WINDOW frames per window, the rest in later windows, in order', async () => {
    vi.useFakeTimers();
    try {
      const reg = await createSharedRegionRegistry({ advisor: { advise: () => ({ ok: true }) } });
      for (let i = 0; i < 250; i++) reg.register({ name: `m${i}`, version: '1', data: Buffer.alloc(16, i) });
      const link = new FusionLink(reg);
      const sent: string[] = [];
      link.welcomed(false, (b) => (sent.push(b.case === 'sharedRegion' ? b.value.name : b.case), true));
      expect(sent.length).toBe(FUSION_FRAMES_PER_WINDOW);
      vi.advanceTimersByTime(FUSION_WINDOW_MS);
      expect(sent.length).toBe(2 * FUSION_FRAMES_PER_WINDOW);
      vi.advanceTimersByTime(FUSION_WINDOW_MS);
      expect(sent).toEqual(Array.from({ length: 250 }, (_, i) => `m${i}`));
      // Added while connected with room in the window: sent at once.
      reg.register({ name: 'late', version: '1', data: Buffer.alloc(16, 1) });
      expect(sent.length).toBe(250 + 1);
      // A disconnect drops what is queued: the next Welcome sends everything again.
      for (let i = 0; i < 120; i++) reg.register({ name: `x${i}`, version: '1', data: Buffer.alloc(16, i) });
      expect(sent.length).toBe(250 + 1 + 49);
      link.disconnected();
      vi.advanceTimersByTime(10 * FUSION_WINDOW_MS);
      expect(sent.length).toBe(250 + 1 + 49);
      link.close();
    } finally {
      vi.useRealTimers();
    }
  });
});
