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

  /**
   * The logger, and every child made from it, with each line charged to this
   * budget. With `bindings`, the logger is `logger.child(bindings)`, made on
   * first use. A child of a logger not made yet is not made either: it keeps
   * all its ancestors' bindings and becomes one pino child of the nearest
   * made ancestor, with all of them, when it is first used (a line written
   * at a level that is on, or any other property read or set). A guest
   * session has three (remote, vm, sessionId), and most sessions never write
   * a line: at 5,000 guests, eager pino children were 15,000 objects with
   * their serialised bindings for nothing, and a session that writes holds
   * one, not three. Its lines are the same: pino writes a child's bindings
   * after its parent's, in order. A child made late takes its nearest made
   * ancestor's level at that time (the host never changes a level at run
   * time; set one on a logger and it is made at once).
   */
  wrap(logger: Logger, bindings?: Bindings): Logger {
    return budgeted(this, bindings === undefined ? { real: logger, from: logger, bindings: {} } : { real: undefined, from: logger, bindings });
  }
}

type Bindings = Record<string, unknown>;
type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type LevelFn = (...args: unknown[]) => void;

/** A logger that exists (`real`) or will be made as `from.child(bindings)` on first use. */
interface LazyNode {
  real: Logger | undefined;
  /** The nearest ancestor that exists: the level a node not made yet has, and what it is made from. */
  from: Logger;
  bindings: Bindings;
}

const NODE = Symbol('node');
const BUDGET = Symbol('budget');

/** The node's pino logger, made now if it was not yet. */
function realOf(node: LazyNode): Logger {
  node.real ??= node.from.child(node.bindings);
  return node.real;
}

/**
 * A budgeted logger: its level methods and child() are methods of this class
 * (no per-logger closures, no proxy trap on the path of every line: a status
 * frame's info line goes through here, mostly to be dropped). Everything else
 * pino's Logger has is reached through a proxy at the end of the class's
 * prototype chain, which hands it to the real logger, made then.
 */
class BudgetedLogger {
  [NODE]: LazyNode;
  [BUDGET]: LogBudget;

  constructor(budget: LogBudget, node: LazyNode) {
    this[NODE] = node;
    this[BUDGET] = budget;
  }

  fatal(...args: unknown[]): void {
    write(this, 'fatal', args);
  }
  error(...args: unknown[]): void {
    write(this, 'error', args);
  }
  warn(...args: unknown[]): void {
    write(this, 'warn', args);
  }
  info(...args: unknown[]): void {
    write(this, 'info', args);
  }
  debug(...args: unknown[]): void {
    write(this, 'debug', args);
  }
  trace(...args: unknown[]): void {
    write(this, 'trace', args);
  }

  child(bindings: Bindings, options?: Parameters<Logger['child']>[1]): Logger {
    const node = this[NODE];
    // Options (a level, serializers) apply to a logger that exists: made now.
    if (options !== undefined)
      return budgeted(this[BUDGET], { real: realOf(node).child(bindings, options) as unknown as Logger, from: node.from, bindings: {} });
    if (node.real !== undefined) return budgeted(this[BUDGET], { real: undefined, from: node.real, bindings });
    return budgeted(this[BUDGET], { real: undefined, from: node.from, bindings: { ...node.bindings, ...bindings } });
  }
}

function write(logger: BudgetedLogger, level: Level, args: unknown[]): void {
  const node = logger[NODE];
  // A level that is off writes nothing: it costs no budget and makes no
  // child. The level's function is looked up per call: pino replaces it
  // when the logger's level changes, with the no-op that its `silent`
  // method always is (cheaper to compare with than isLevelEnabled).
  const levels = node.real ?? node.from;
  if (levels[level] === levels.silent || !logger[BUDGET].take()) return;
  const real = realOf(node);
  (real[level] as LevelFn).apply(real, args);
}

// The rest of pino's Logger, for every budgeted logger: read, set or tested on its real logger.
Object.setPrototypeOf(
  BudgetedLogger.prototype,
  new Proxy(Object.create(null) as object, {
    get: (_target, prop, receiver: BudgetedLogger) => {
      const real = realOf(receiver[NODE]);
      const value = Reflect.get(real, prop, real) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(real) : value;
    },
    set: (_target, prop, value, receiver: BudgetedLogger) => {
      // The logger's own fields, should a compiler assign rather than define them.
      if (prop === NODE || prop === BUDGET) return Reflect.defineProperty(receiver, prop, { value, writable: true, enumerable: true, configurable: true });
      const real = realOf(receiver[NODE]);
      return Reflect.set(real, prop, value, real);
    },
  }),
);

function budgeted(budget: LogBudget, node: LazyNode): Logger {
  return new BudgetedLogger(budget, node) as unknown as Logger;
}
