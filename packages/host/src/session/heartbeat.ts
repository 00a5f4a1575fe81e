// One timer for the heartbeats of every guest session with the same interval.
// A timer per session meant, at 1,000 guests, 500 timer callbacks and as many
// event-loop wake-ups a second; one sweep over all sessions costs a loop.
//
// The sweep runs twice per interval. A session pings its guest once it has
// sent nothing for PING_AFTER_SILENT_INTERVALS intervals: the agent, which
// ends a session after three silent intervals, then hears from the host at
// least every two (1.5 + half an interval of sweep), as it did when a timer
// per session pinged after one silent interval checked once per interval;
// an idle guest gets a ping every 1.5 intervals instead of every one.

/** Something the sweep calls: a session checking its guest's heartbeat. */
export interface HeartbeatMember {
  beat(nowMs: number): void;
}

/** Sweeps per heartbeat interval. */
export const SWEEPS_PER_INTERVAL = 2;

/** Intervals of the host's silence after which a session pings its guest. */
export const PING_AFTER_SILENT_INTERVALS = 1.5;

/** A timer every interval / SWEEPS_PER_INTERVAL over the sessions added to it, running only while it has any. */
export class HeartbeatSweep {
  private static readonly shared = new Map<number, HeartbeatSweep>();
  private readonly members = new Set<HeartbeatMember>();
  private timer: NodeJS.Timeout | undefined;

  /** @param intervalMs the sessions' heartbeat interval */
  constructor(
    readonly intervalMs: number,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** The process-wide sweep of sessions with this interval. */
  static forInterval(intervalMs: number): HeartbeatSweep {
    let sweep = HeartbeatSweep.shared.get(intervalMs);
    if (sweep === undefined) {
      sweep = new HeartbeatSweep(intervalMs);
      HeartbeatSweep.shared.set(intervalMs, sweep);
    }
    return sweep;
  }

  /** Number of sessions swept. */
  get size(): number {
    return this.members.size;
  }

  /** Whether the timer runs (only while there are sessions). */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Adds a session; returns the function that removes it. */
  add(member: HeartbeatMember): () => void {
    this.members.add(member);
    this.timer ??= setInterval(() => this.sweep(), Math.max(1, this.intervalMs / SWEEPS_PER_INTERVAL));
    return () => {
      this.members.delete(member);
      if (this.members.size === 0 && this.timer !== undefined) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** One sweep: every session checks its heartbeat (exported for tests). */
  sweep(): void {
    const nowMs = this.nowMs();
    // A copy: a beat may end its session, which removes it from the set.
    for (const member of [...this.members]) member.beat(nowMs);
  }
}
