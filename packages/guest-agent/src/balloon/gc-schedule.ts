// When the balloon collects garbage on purpose. madvise hands a deflated
// chunk's pages back at once; a full GC only unmaps the spent buffers and
// settles V8's external-memory account, and costs milliseconds that a target
// arriving right after should not wait for. So: after a deflate to empty or
// after 256 MiB freed (always where madvise is unavailable: then the GC is
// what frees the pages), a little after the move, never inside one.
import { fullGc } from './gc.mjs';

/** MiB freed after which a deflate ends with a collection. */
const COLLECT_AFTER_FREED_MIB = 256;
/** How long after a move the collection runs (a target arriving now goes first). */
const COLLECT_DELAY_MS = 20;

/** Schedules the balloon's deliberate full GCs (main thread and workers). */
export class GcSchedule {
  private freedMib = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** Whether pages are handed back by madvise (false: only a GC frees them). */
    private readonly madviseFrees: boolean,
    /** Asks the worker threads to collect too. */
    private readonly collectWorkers: () => void,
    /** Whether the balloon is moving (a collection waits until it is not). */
    private readonly moving: () => boolean,
  ) {}

  /** Chunks of `mib` MiB were freed (deflated, or released from a failed worker). */
  noteFreed(mib: number): void {
    this.freedMib += mib;
  }

  /** The balloon settled at `actualMib` after freeing memory: collect if it is worth it. */
  afterDeflate(actualMib: number): void {
    if (!this.madviseFrees || actualMib === 0 || this.freedMib >= COLLECT_AFTER_FREED_MIB) this.schedule();
  }

  /** Collects now, in this thread and the workers. */
  collectNow(): void {
    this.freedMib = 0;
    fullGc()?.();
    this.collectWorkers();
  }

  /** Cancels a scheduled collection. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.moving()) this.collectNow();
      else this.schedule();
    }, COLLECT_DELAY_MS);
    this.timer.unref();
  }
}
