// When the balloon collects garbage on purpose. madvise hands a deflated
// chunk's pages back at once; a full GC only unmaps the spent buffers and
// settles V8's external-memory account, and costs milliseconds that a target
// arriving meanwhile would wait for (the GC runs on the main thread, in the
// timers phase, before the socket's frame is read). So: after a deflate to
// empty or after 256 MiB freed (always where madvise is unavailable: then the
// GC is what frees the pages), once the balloon has been quiet for a while:
// each new target pushes it back, so a burst of targets is never interleaved
// with collections; only past 4 GiB freed does it run at the first pause.
import { fullGc } from './gc.mjs';

/** MiB freed after which a deflate ends with a collection. */
const COLLECT_AFTER_FREED_MIB = 256;
/** Quiet time (no new target, not moving) before a collection runs. */
const COLLECT_WHEN_QUIET_MS = 200;
/** Freed MiB after which new targets no longer push the collection back (bounds what spent buffers keep mapped). */
const COLLECT_ANYWAY_AFTER_FREED_MIB = 4096;

/** Schedules the balloon's deliberate full GCs. */
export class GcSchedule {
  private freedMib = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** Whether pages are handed back by madvise (false: only a GC frees them). */
    private readonly madviseFrees: boolean,
    /** Whether the balloon is moving (a collection waits until it is not). */
    private readonly moving: () => boolean,
    /** Lets go of what should be unmapped by this collection (spare chunk memory beyond one chunk). */
    private readonly beforeCollect: () => void = () => {},
  ) {}

  /** Chunks of `mib` MiB were freed (deflated, or released after a failed call). */
  noteFreed(mib: number): void {
    this.freedMib += mib;
  }

  /** The balloon settled at `actualMib` after freeing memory: collect if it is worth it. */
  afterDeflate(actualMib: number): void {
    if (!this.madviseFrees || actualMib === 0 || this.freedMib >= COLLECT_AFTER_FREED_MIB) this.schedule();
  }

  /** A new target arrived: a pending collection waits for the next quiet spell. */
  noteActivity(): void {
    if (this.timer && this.freedMib < COLLECT_ANYWAY_AFTER_FREED_MIB) this.timer.refresh();
  }

  /** Collects now. */
  collectNow(): void {
    this.freedMib = 0;
    this.beforeCollect();
    fullGc()?.();
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
    }, COLLECT_WHEN_QUIET_MS);
    this.timer.unref();
  }
}
