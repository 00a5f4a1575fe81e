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

  /**
   * The logger, and every child made from it, with each line charged to this
   * budget. With `bindings`, the logger is `logger.child(bindings)`, made on
   * first use. Children of the result are made on first use too: a guest
   * session has three (remote, vm, sessionId) and most sessions never write a
   * line at a level that is on, so at 5,000 guests eager pino children were
   * 15,000 objects with their serialised bindings for nothing. A child made
   * late takes its parent's level at that time (the host never changes a
   * level at run time; set one on the child and it is made at once).
   */
  wrap(logger: Logger, bindings?: Bindings): Logger {
    const root = lazyNode(logger, undefined, {}, undefined);
    return this.proxyOf(bindings === undefined ? root : lazyNode(undefined, root, bindings, undefined));
  }

  // One handler for every wrapped logger: its state lives on the node (the
  // proxy's target), so a session's three loggers are three small nodes, not
  // three handlers with their closures and maps.
  private readonly handler: ProxyHandler<LazyNode> = {
    get: (node, prop) => {
      if (prop === 'child') {
        node.child ??= (bindings, options) => this.proxyOf(lazyNode(undefined, node, bindings, options));
        return node.child;
      }
      if (typeof prop === 'string' && LEVELS.has(prop)) {
        // One function per level, made on first use and kept: the wrapper is
        // on the path of every target and status (a line per target, mostly
        // dropped under load), where a closure per call showed in the profile.
        node.levelMethods ??= new Map();
        let method = node.levelMethods.get(prop);
        if (method === undefined) {
          method = (...args: unknown[]) => {
            // A level that is off writes nothing: it costs no budget and
            // makes no child. The level's function is looked up per call:
            // pino replaces it when the logger's level changes, with the
            // no-op that its `silent` method always is (cheaper to compare
            // with than isLevelEnabled, which showed at 5,000 guests: a line
            // per status and target).
            const levels = levelSourceOf(node);
            const write = Reflect.get(levels, prop, levels) as (...a: unknown[]) => void;
            if (write === levels.silent || !this.take()) return;
            const target = realOf(node);
            (Reflect.get(target, prop, target) as (...a: unknown[]) => void).apply(target, args);
          };
          node.levelMethods.set(prop, method);
        }
        return method;
      }
      const target = realOf(node);
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
    set: (node, prop, value) => {
      const target = realOf(node);
      return Reflect.set(target, prop, value, target);
    },
    has: (node, prop) => prop in realOf(node),
  };

  private proxyOf(node: LazyNode): Logger {
    return new Proxy(node, this.handler) as unknown as Logger;
  }
}

type Bindings = Record<string, unknown>;
type ChildOptions = Parameters<Logger['child']>[1];

/** A logger that exists (`real`) or will be made from its parent on first use, with its wrapper's per-level functions. */
interface LazyNode {
  real: Logger | undefined;
  parent: LazyNode | undefined;
  bindings: Bindings;
  options: ChildOptions;
  levelMethods: Map<string, (...args: unknown[]) => void> | undefined;
  child: ((bindings: Bindings, options?: ChildOptions) => Logger) | undefined;
}

function lazyNode(real: Logger | undefined, parent: LazyNode | undefined, bindings: Bindings, options: ChildOptions): LazyNode {
  return { real, parent, bindings, options, levelMethods: undefined, child: undefined };
}

/** The node's pino logger, made now (with its ancestors) if it was not yet. */
function realOf(node: LazyNode): Logger {
  if (node.real !== undefined) return node.real;
  const parent = realOf(node.parent as LazyNode);
  const made: Logger = node.options === undefined ? parent.child(node.bindings) : (parent.child(node.bindings, node.options) as unknown as Logger);
  node.real = made;
  return made;
}

/** The logger whose level the node has: itself once made, else its nearest made ancestor (a child inherits its level). */
function levelSourceOf(node: LazyNode): Logger {
  let n = node;
  while (n.real === undefined && n.options?.level === undefined) n = n.parent as LazyNode;
  return n.real ?? realOf(n);
}
