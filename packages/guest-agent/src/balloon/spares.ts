// Chunk memory kept for reuse: buffers whose pages a deflate has already
// handed back (munlock + MADV_DONTNEED: no RSS, no VmLck, only address
// space), taken again by the next inflate instead of mapping new ones.
//
// Why: every new SharedArrayBuffer costs an mmap and two mprotects on the
// main thread, grows V8's external-memory account (which schedules GCs),
// and every dead one is unmapped later by V8's background sweeper, whose
// munmaps take the process's mmap lock for writing while the balloon pins
// (perf trace of the reaction benchmark: 2,500–2,800 munmaps on each of two
// V8 threads during 600 targets). Reused buffers cost none of that.

/** The memory of one chunk, without its bookkeeping (seed, lock state). */
export interface ChunkMemory {
  readonly sab: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly sizeMib: number;
}

/** Released chunk memory waiting to be reused, newest first out, at most `capMib`. */
export class SpareChunks {
  private readonly spares: ChunkMemory[] = [];
  private spareMibValue = 0;

  constructor(
    /** Most MiB (of address space: the pages are released) kept for reuse. */
    private readonly capMib: number,
  ) {}

  /** MiB of address space held for reuse. */
  get spareMib(): number {
    return this.spareMibValue;
  }

  /** Keeps released memory for reuse (its pages must be handed back already); beyond the cap it is left to the GC. */
  put(memory: ChunkMemory): void {
    if (this.spareMibValue + memory.sizeMib > this.capMib) return;
    this.spares.push({ sab: memory.sab, bytes: memory.bytes, sizeMib: memory.sizeMib });
    this.spareMibValue += memory.sizeMib;
  }

  /** Memory of exactly `sizeMib` MiB to reuse, or null. */
  take(sizeMib: number): ChunkMemory | null {
    const last = this.spares.at(-1);
    if (!last || last.sizeMib !== sizeMib) return null;
    this.spares.pop();
    this.spareMibValue -= sizeMib;
    return last;
  }

  /** Lets go of all but `keepMib` MiB (the GC then unmaps them): the address space follows the balloon down. */
  trim(keepMib: number): void {
    while (this.spareMibValue > keepMib) {
      const dropped = this.spares.shift();
      if (!dropped) break;
      this.spareMibValue -= dropped.sizeMib;
    }
  }
}
