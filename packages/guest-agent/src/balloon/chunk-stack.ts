// The balloon's chunks: a last-in first-out stack of committed (and, where
// permitted, pinned) SharedArrayBuffers, and the only code that gives their
// pages back to the kernel. The engine decides how far to move; this module
// knows how a chunk is made, counted, checked and released.
//
// To extend it (the hand-off releases the newest pinned chunks while still
// counting them): add the operation here, beside popNewest, and keep
// `actualMib` the one figure the engine reports as the balloon's size.
import { AgentError } from '../errors.js';
import { MADV_DONTNEED, madvise, munlock } from '../native/libc.js';
import { firstBadPage } from './pages.mjs';
import { BYTES_PER_MIB } from '@memballoon/protocol';


// ES2024's growable form of the constructor (Node 20 has it; our lib is ES2023).
const GrowableSharedArrayBuffer = SharedArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => SharedArrayBuffer;

/** One chunk of the balloon: its memory, its size and the first page word touchPages writes. */
export interface Chunk {
  readonly sab: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly sizeMib: number;
  readonly seed: number;
  /** Pinned with mlock (set when it is pushed). */
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

/** The balloon's committed chunks, newest last. */
export class ChunkStack {
  private readonly chunks: Chunk[] = [];
  private nextSeed = 1;
  private actualMibValue = 0;
  private lockedMibValue = 0;

  constructor(
    /** The system page size: one touched word per page. */
    readonly pageSizeBytes: number,
  ) {}

  /** MiB the balloon holds (committed chunks). */
  get actualMib(): number {
    return this.actualMibValue;
  }

  /** MiB the balloon's chunks hold in this process's memory now (what a domain that does not see this process must count). */
  get residentMib(): number {
    return this.actualMibValue;
  }

  /** MiB of those that are pinned. */
  get lockedMib(): number {
    return this.lockedMibValue;
  }

  /**
   * Makes chunks for `mib` MiB (the last may be smaller than chunkMib), not
   * yet committed nor counted; each gets its own run of page words. Stops
   * early when memory cannot be mapped: `error` says why.
   */
  allocate(mib: number, chunkMib: number): { chunks: Chunk[]; error: string } {
    const chunks: Chunk[] = [];
    for (let left = mib; left > 0; ) {
      const sizeMib = Math.min(chunkMib, left);
      const bytes = sizeMib * BYTES_PER_MIB;
      let sab: SharedArrayBuffer;
      try {
        sab = allocateChunkMemory(bytes);
      } catch (err) {
        return { chunks, error: `could not allocate ${sizeMib} MiB: ${err instanceof Error ? err.message : String(err)}` };
      }
      chunks.push({ sab, bytes: new Uint8Array(sab), sizeMib, seed: this.nextSeed, locked: false });
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
   * Deflates last-in first-out by up to `maxMib` (whole chunks, at least one
   * when any is held): each chunk is unpinned and its pages handed back.
   * Returns the MiB freed.
   */
  popNewest(maxMib: number): number {
    let freedMib = 0;
    while (freedMib < maxMib) {
      const chunk = this.chunks.pop();
      if (!chunk) break;
      if (chunk.locked) {
        munlock(chunk.bytes);
        this.lockedMibValue -= chunk.sizeMib;
      }
      // madvise refuses locked pages, hence munlock first.
      madvise(chunk.bytes, MADV_DONTNEED);
      this.actualMibValue -= chunk.sizeMib;
      freedMib += chunk.sizeMib;
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
