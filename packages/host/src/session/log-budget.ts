// One host-wide budget for every log line a guest can make the host write.
// A guest controls how often it sends frames, errors and statuses; each can
// cause a line (a refusal, a clamp, a goodbye), so without a budget a guest
// chooses how fast the host's disk fills. Loggers wrapped here share one
// token bucket: lines beyond it are dropped and counted, and the next line
// that fits says how many were dropped. Host-made lines that go through a
// guest's logger (a target sent) share the budget too: under a flood they
// are dropped with the rest, which is the price of one simple bound.
import type { Logger } from 'pino';
import { RateLimiter } from './limits.js';

const LEVELS: ReadonlySet<string> = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

/** A token bucket of log lines shared by every guest's logger. */
export class LogBudget {
  private readonly bucket: RateLimiter;
  private suppressedLines = 0;

  /**
   * @param linesPerSecond steady rate of lines allowed host-wide
   * @param burstLines lines allowed at once (a host restart with many guests reconnecting)
   * @param report where "N lines were dropped" is said (the host's own logger, not a guest's)
   */
  constructor(
    linesPerSecond: number,
    burstLines: number,
    private readonly report: Logger,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.bucket = new RateLimiter(linesPerSecond, nowMs(), burstLines);
  }

  /** Lines dropped since the last report. */
  get suppressed(): number {
    return this.suppressedLines;
  }

  /** Takes one line from the budget; false (and counted) when it is spent. */
  take(): boolean {
    if (!this.bucket.take(this.nowMs())) {
      this.suppressedLines++;
      return false;
    }
    if (this.suppressedLines > 0) {
      const n = this.suppressedLines;
      this.suppressedLines = 0;
      this.report.warn({ suppressedLines: n }, `${n} guest-triggered log lines were dropped (over the host-wide log budget)`);
    }
    return true;
  }

  /** The logger, and every child made from it, with each line charged to this budget. */
  wrap(logger: Logger): Logger {
    // One function per level, made on first use and kept: the wrapper is on
    // the path of every target and status (a line per target, mostly dropped
    // under load), where a closure per call showed in the host's profile.
    const levelMethods = new Map<string, (...args: unknown[]) => void>();
    let child: ((...args: unknown[]) => Logger) | undefined;
    return new Proxy(logger, {
      get: (target, prop, receiver) => {
        if (prop === 'child') {
          child ??= (...args: unknown[]) => this.wrap((target.child as unknown as (...a: unknown[]) => Logger).apply(target, args));
          return child;
        }
        if (typeof prop === 'string' && LEVELS.has(prop)) {
          let method = levelMethods.get(prop);
          if (method === undefined) {
            method = (...args: unknown[]) => {
              // A level that is off writes nothing: it costs no budget. The
              // level's function is looked up per call: pino replaces it when
              // the logger's level changes, with the no-op that its `silent`
              // method always is (cheaper to compare with than isLevelEnabled,
              // which showed at 5,000 guests: a line per status and target).
              const write = Reflect.get(target, prop, target) as (...a: unknown[]) => void;
              if (write === target.silent || !this.take()) return;
              write.apply(target, args);
            };
            levelMethods.set(prop, method);
          }
          return method;
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }
}
