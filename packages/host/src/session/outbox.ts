// Latest-wins delivery of balloon targets over a congested socket. Only the
// newest target matters (DESIGN.md), so while the socket's send buffer is
// above a threshold a new target replaces the one waiting instead of queueing
// behind it: a slow guest costs one pending target, never a growing queue.
// Pure: the session feeds it bufferedAmount and sends what it returns.

/** One SetBalloonTarget. */
export interface OutboundTarget {
  targetMib: number;
  generation: number;
}

/** Holds at most one target while the socket is congested. */
export class TargetOutbox {
  #pending: OutboundTarget | undefined;

  constructor(private readonly coalesceAboveBytes: number) {}

  /** The target waiting for the socket to drain, if any. */
  get pending(): OutboundTarget | undefined {
    return this.#pending;
  }

  /** Offers a new target: returns it to send now, or undefined when it must wait (replacing any older one). */
  offer(target: OutboundTarget, bufferedBytes: number): OutboundTarget | undefined {
    if (this.#pending === undefined && bufferedBytes <= this.coalesceAboveBytes) return target;
    if (this.#pending === undefined || target.generation > this.#pending.generation) this.#pending = target;
    return undefined;
  }

  /** Returns the waiting target once the socket has room (and forgets it), else undefined. */
  flush(bufferedBytes: number): OutboundTarget | undefined {
    if (this.#pending === undefined || bufferedBytes > this.coalesceAboveBytes) return undefined;
    const t = this.#pending;
    this.#pending = undefined;
    return t;
  }
}
