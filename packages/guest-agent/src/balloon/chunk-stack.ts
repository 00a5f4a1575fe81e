// The balloon's chunks: a last-in first-out stack of committed (and, where
// permitted, pinned) SharedArrayBuffers, and the only code that gives their
// pages back to the kernel. The engine decides how far to move; this module
// knows how a chunk is made, counted, checked and released.
//
// The hand-off releases the newest chunks while still counting them
// (handOffNewest); `actualMib` stays the one figure the engine reports as
// the balloon's size: committed chunks plus the handed-off part.
import { AgentError } from '../errors.js';
import { MADV_DONTNEED, MADV_DONTNEED_LOCKED, madvise, munlock } from '../native/libc.js';
import { firstBadPage, touchPages } from './pages.mjs';
import { SpareChunks, type ChunkMemory } from './spares.js';
import { BYTES_PER_MIB } from '@memballoon/protocol';

// ES2024's growable form of the constructor (Node 20 has it; our lib is ES2023).
const GrowableSharedArrayBuffer = SharedArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => SharedArrayBuffer;

/** One chunk of the balloon: its memory, its size and the first page word touchPages writes. */
export interface Chunk {
  readonly sab: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly sizeMib: number;
  readonly seed: number;
  /** Pinned with mlock (set when it is pushed), or marked locked on fault before an async call faults it in. */
  locked: boolean;
}

/** Allocates page-aligned memory outside glibc's heap (not yet committed); throws RangeError when V8 cannot map it. */
export function allocateChunkMemory(bytes: number): SharedArrayBuffer {
  // Growable SABs are mapped by V8 itself, page-aligned and outside glibc's
  // heap, so madvise can return their pages and a GC's munmap frees them.
  return new GrowableSharedArrayBuffer(bytes, { maxByteLength: bytes });
}

/**
 * Hands a chunk's pages back to the kernel, whatever state it is in
 * (munlock first: madvise refuses locked pages). VmRSS drops at once,
 * without waiting for a GC to unmap the buffer.
 */
export function releaseChunk(chunk: Chunk): void {
  munlock(chunk.bytes);
  madvise(chunk.bytes, MADV_DONTNEED);
}

const EINVAL = 22;
/** Whether this kernel knows MADV_DONTNEED_LOCKED (Linux 5.18+): learnt from the first try. */
let dontNeedLockedKnown: boolean | undefined;

/**
 * Gives a counted chunk's pages back to the kernel (uncharged from the
 * guest's cgroup at once) and unpins its range. A locked chunk is zapped
 * with MADV_DONTNEED_LOCKED first: munlock before a plain MADV_DONTNEED
 * walks every page once more to move it off the unevictable list, about a
 * third of the release (1 GiB: 125 ms instead of 150–210 ms here); the
 * munlock after only clears the now empty range's lock (VmLck), ~3 ms/GiB.
 */
function releasePages(chunk: Chunk): void {
  if (chunk.locked && dontNeedLockedKnown !== false) {
    const r = madvise(chunk.bytes, MADV_DONTNEED_LOCKED);
    if (r.ok) {
      dontNeedLockedKnown = true;
      munlock(chunk.bytes);
      return;
    }
    // An older kernel: the classic order from now on.
    if (r.errno === EINVAL && dontNeedLockedKnown === undefined) dontNeedLockedKnown = false;
  }
  // madvise(MADV_DONTNEED) refuses locked pages, hence munlock first.
  if (chunk.locked) munlock(chunk.bytes);
  madvise(chunk.bytes, MADV_DONTNEED);
}

/** The balloon's committed chunks, newest last. */
export class ChunkStack {
  private readonly chunks: Chunk[] = [];
  private nextSeed = 1;
  /** Committed chunks + handed off. */
  private actualMibValue = 0;
  private lockedMibValue = 0;
  /** Released because the host's limit took them over: counted, held by no chunk. */
  private handedOffMibValue = 0;
  /** Deflated chunks' memory (pages handed back), reused by the next inflate. */
  private readonly spares: SpareChunks;
  /**
   * One chunk's memory already committed (resident, not pinned), for the
   * next target's first chunk: pinning resident pages faults nothing, so the
   * reaction the host sees is the mlock alone, not 256 page faults (each
   * slow on a guest that hands freed pages back to its hypervisor).
   */
  private warm: ChunkMemory | null = null;

  constructor(
    /** The system page size: one touched word per page. */
    readonly pageSizeBytes: number,
    /**
     * Most MiB of deflated chunks' address space kept for reuse (default
     * 4 GiB, what gc-schedule.ts already lets spent buffers keep mapped
     * before it collects regardless; a collection trims them to one chunk).
     */
    spareCapMib = 4096,
  ) {
    this.spares = new SpareChunks(spareCapMib);
  }

  /** MiB of address space kept for reuse (no pages behind it). */
  get spareMib(): number {
    return this.spares.spareMib;
  }

  /** Memory for one chunk: a spare (reused address space) or a new mapping; throws RangeError when V8 cannot map it. */
  private memoryFor(sizeMib: number): ChunkMemory {
    const spare = this.spares.take(sizeMib);
    if (spare) return spare;
    const sab = allocateChunkMemory(sizeMib * BYTES_PER_MIB);
    return { sab, bytes: new Uint8Array(sab), sizeMib };
  }

  /** Commits one chunk of `sizeMib` for the next target's first chunk, unless one is ready (costs that chunk's RSS while idle). */
  keepWarm(sizeMib: number): void {
    if (this.warm?.sizeMib === sizeMib) return;
    let memory: ChunkMemory;
    try {
      memory = this.memoryFor(sizeMib);
    } catch {
      // No address space now: the next target maps its own (and says why if it cannot).
      return;
    }
    // Any non-zero word commits a page; the chunk's own words are written when it is pinned.
    touchPages(memory.sab, 1, this.pageSizeBytes / 4);
    this.warm = memory;
  }

  /** Lets go of the spare memory beyond `keepMib` (a GC after this unmaps it). */
  trimSpares(keepMib: number): void {
    this.spares.trim(keepMib);
  }

  /** Takes back memory that was never committed or has been released (munlock + MADV_DONTNEED), for reuse. */
  recycle(chunk: Chunk): void {
    this.spares.put(chunk);
  }

  /** MiB the balloon holds: committed chunks plus the handed-off part. */
  get actualMib(): number {
    return this.actualMibValue;
  }

  /** MiB the balloon's chunks hold in this process's memory now (what a domain that does not see this process must count). */
  get residentMib(): number {
    // The handed-off part's pages are released: counting them here too would
    // take them off a process domain's availability twice (see floor.ts).
    return this.actualMibValue - this.handedOffMibValue;
  }

  /** MiB of those that are pinned. */
  get lockedMib(): number {
    return this.lockedMibValue;
  }

  /** MiB handed off to the host's limit: pages released, still part of the balloon. */
  get handedOffMib(): number {
    return this.handedOffMibValue;
  }

  /**
   * The hand-off: releases the newest chunks (releasePages: the pages are
   * uncharged from the guest's cgroup at once, and unpinned) until
   * `handedOffMib` of the balloon are handed off, counting them still.
   * Whole chunks only, never more than asked: a chunk larger than what is
   * left stops it. Returns the MiB released now.
   */
  handOffNewest(handedOffMib: number): number {
    let releasedMib = 0;
    while (this.handedOffMibValue < handedOffMib) {
      const chunk = this.chunks.at(-1);
      if (!chunk || this.handedOffMibValue + chunk.sizeMib > handedOffMib) break;
      this.chunks.pop();
      releasePages(chunk);
      if (chunk.locked) this.lockedMibValue -= chunk.sizeMib;
      this.handedOffMibValue += chunk.sizeMib;
      releasedMib += chunk.sizeMib;
      // Its address space serves the next chunks pinned (often the same
      // inflate's: the host hands off while the balloon inflates), as a deflate's does.
      this.spares.put(chunk);
    }
    return releasedMib;
  }

  /**
   * Makes chunks for `mib` MiB (the last may be smaller than chunkMib), not
   * yet committed nor counted; each gets its own run of page words. Reuses
   * deflated chunks' memory first, then maps new. Stops early when memory
   * cannot be mapped: `error` says why.
   */
  allocate(mib: number, chunkMib: number): { chunks: Chunk[]; error: string } {
    const chunks: Chunk[] = [];
    for (let left = mib; left > 0; ) {
      const sizeMib = Math.min(chunkMib, left);
      const bytes = sizeMib * BYTES_PER_MIB;
      let memory: ChunkMemory;
      if (chunks.length === 0 && this.warm?.sizeMib === sizeMib) {
        memory = this.warm;
        this.warm = null;
      } else {
        try {
          memory = this.memoryFor(sizeMib);
        } catch (err) {
          return { chunks, error: `could not allocate ${sizeMib} MiB: ${err instanceof Error ? err.message : String(err)}` };
        }
      }
      chunks.push({ sab: memory.sab, bytes: memory.bytes, sizeMib, seed: this.nextSeed, locked: false });
      this.nextSeed += bytes / this.pageSizeBytes;
      left -= sizeMib;
    }
    return { chunks, error: '' };
  }

  /** Counts a committed chunk (pinned or not) as the newest of the balloon. */
  push(chunk: Chunk, locked: boolean): void {
    chunk.locked = locked;
    if (locked) this.lockedMibValue += chunk.sizeMib;
    this.chunks.push(chunk);
    this.actualMibValue += chunk.sizeMib;
  }

  /**
   * Deflates by up to `maxMib`: the handed-off part first, with no page work
   * (its pages are gone already; the host raises the guest's limit instead),
   * then chunks last-in first-out (whole chunks, at least one when any is
   * held), each unpinned and its pages handed back. Returns the MiB of pages
   * freed (handed-off MiB are not: they free nothing here).
   */
  popNewest(maxMib: number): number {
    const handedBackMib = Math.min(maxMib, this.handedOffMibValue);
    this.handedOffMibValue -= handedBackMib;
    this.actualMibValue -= handedBackMib;
    let freedMib = 0;
    maxMib -= handedBackMib;
    while (freedMib < maxMib) {
      const chunk = this.chunks.pop();
      if (!chunk) break;
      releasePages(chunk);
      if (chunk.locked) this.lockedMibValue -= chunk.sizeMib;
      this.actualMibValue -= chunk.sizeMib;
      freedMib += chunk.sizeMib;
      this.spares.put(chunk);
    }
    return freedMib;
  }

  /**
   * Checks that every page holds its distinct non-zero word (what the
   * kernel has committed, not bookkeeping). Returns the pages checked, or
   * throws AgentError('internal') naming the first bad page.
   */
  verifyPages(): number {
    const pageWords = this.pageSizeBytes / 4;
    let pages = 0;
    for (const [index, chunk] of this.chunks.entries()) {
      const bad = firstBadPage(chunk.sab, chunk.seed, pageWords);
      if (bad >= 0) {
        const word = new Uint32Array(chunk.sab)[bad * pageWords];
        throw new AgentError('internal', `chunk ${index} page ${bad} holds ${word}, expected ${chunk.seed + bad}`);
      }
      pages += chunk.bytes.byteLength / this.pageSizeBytes;
    }
    return pages;
  }
}
