// The reclaim: making room in the pool by inflating other guests' balloons,
// waiting for them to pin it, and undoing it when it cannot work. Operations
// that take memory from the free quota (a start, a deflate, a payback) run
// one at a time under the quota lock, so memory reclaimed for one is not
// taken by another while it waits.
//
// The rules (issue 12): what can be reclaimed is computed from the caps and
// the guests' floors before any balloon moves, and a reclaim that cannot
// succeed is not started; a rollback always completes (Pool.setTarget with
// `restore`); memory that guests take back on their own (deflate on
// pressure) is paid back from the others, whatever their policy.
import type { Logger } from 'pino';
import type { BalloonStatus } from '@memballoon/protocol';
import { HostError } from '../errors.js';
import type { Pool } from '../pool/pool.js';

/** Time as the reclaim sees it; tests pass a fake one. */
export interface Clock {
  /** Wall clock in ms. */
  nowMs(): number;
  /** Calls `fn` once after `delayMs`; returns the function that cancels it. */
  after(delayMs: number, fn: () => void): () => void;
}

/** The real clock. */
export const SYSTEM_CLOCK: Clock = Object.freeze({
  nowMs: () => Date.now(),
  after: (delayMs: number, fn: () => void) => {
    const timer = setTimeout(fn, delayMs);
    return () => clearTimeout(timer);
  },
});

/** Why a target is sent: the reclaim's own sources, beside the service's. */
export type ReclaimSource = 'reclaim' | 'rollback' | 'payback';

/** What the reclaim needs of the service. */
export interface ReclaimHost {
  readonly pool: Pool;
  /** Sends a target through the service's one path (a rollback with Pool.setTarget's `restore`); returns its generation. */
  applyTarget(name: string, targetMib: number, source: ReclaimSource): number;
  /** The newest generation sent to a running guest and its newest status; undefined once it stopped. */
  guest(name: string): { generation: number; status: BalloonStatus | undefined } | undefined;
}

/** Options of the reclaim. */
export interface ReclaimOptions {
  /** How long a reclaim waits for guests to pin what it asked for. */
  timeoutMs: number;
  clock: Clock;
  log: Logger;
}

/** Reclaims memory from running guests under one quota lock. */
export class Reclaimer {
  private lockTail: Promise<unknown> = Promise.resolve();
  /** Operations queued on the lock or running under it. */
  private lockOps = 0;
  private readonly waiters = new Set<() => void>();
  private paybackQueued = false;
  /** The last reason a payback could not be planned: logged once per change, not per status frame. */
  private paybackProblem: string | undefined;
  private closed = false;

  constructor(
    private readonly host: ReclaimHost,
    private readonly options: ReclaimOptions,
  ) {}

  /** Runs `fn` after every operation queued before it, alone. */
  withQuotaLock<T>(fn: () => Promise<T>): Promise<T> {
    this.lockOps += 1;
    const run = this.lockTail.then(fn, fn);
    this.lockTail = run
      .catch(() => undefined)
      .finally(() => {
        this.lockOps -= 1;
      });
    return run;
  }

  /**
   * No operation holds the quota lock or waits for it: one queued now would
   * run next, with nothing before it, so a change that needs the lock only
   * to keep its turn (no reclaim) may be made at once instead.
   */
  get lockIdle(): boolean {
    return this.lockOps === 0;
  }

  /** The state changed (a status, a stop, a target): waiters check their condition again. */
  changed(): void {
    // Called for every frame a guest sends: no copy of an empty set.
    if (this.waiters.size === 0) return;
    for (const w of [...this.waiters]) w();
  }

  /** Wakes every waiter for good: the host is shutting down. */
  close(): void {
    this.closed = true;
    this.changed();
  }

  /** Resolves true once `done()` holds, false at the deadline; re-checked on every change. */
  waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (value: boolean) => {
        cancel();
        this.waiters.delete(check);
        resolve(value);
      };
      const check = () => {
        if (done()) finish(true);
      };
      const cancel = this.options.clock.after(timeoutMs, () => finish(done()));
      this.waiters.add(check);
    });
  }

  /**
   * Makes `needMib` free (call it under the quota lock): plans reclaim from
   * the running VMs except `exclude`, sends the new targets and waits until
   * the guests have pinned enough. A guest that stops short keeps what it
   * pinned and drops out; the rest is planned again over the others, until
   * the deadline. Refuses at once (pool_exhausted, nothing sent) when the
   * caps and floors cannot cover the need. On failure every target it raised
   * is put back, always (nothing half-applied). `log` is where its lines go:
   * a guest's start passes its session logger, so that a guest retrying its
   * start cannot write more than the host's budget of guest-caused lines.
   */
  async fund(needMib: number, exclude: readonly string[], what: string, stillWanted: () => boolean, log: Logger = this.options.log): Promise<void> {
    const { pool } = this.host;
    if (pool.freeMib >= needMib) return;
    let plan = this.planOrRefuse(needMib, exclude, what);
    const { clock } = this.options;
    const deadlineMs = clock.nowMs() + this.options.timeoutMs;
    const heldAtStartMib = new Map(pool.names().map((n) => [n, pool.get(n)?.heldMib ?? 0]));
    // First target of each VM this reclaim changed, and the newest generation it sent.
    const original = new Map<string, number>();
    const sent = new Map<string, number>();
    const dropped = new Set<string>(exclude);
    let failure: string;
    for (;;) {
      for (const [name, targetMib] of plan.targets) {
        if (!original.has(name)) original.set(name, pool.get(name)?.targetMib ?? 0);
        sent.set(name, this.host.applyTarget(name, targetMib, 'reclaim'));
      }
      log.info({ needMib, freeMib: pool.freeMib, targets: Object.fromEntries(plan.targets), what }, 'reclaiming memory from running VMs');
      const shortNow = () => [...sent].filter(([name, generation]) => !dropped.has(name) && isShort(this.host.guest(name), generation));
      // Every guest asked has pinned its target and the pool is still short:
      // others took memory back meanwhile; plan again rather than wait.
      const allReached = () => [...sent.keys()].every((name) => dropped.has(name) || reached(pool, name));
      const leftMs = deadlineMs - clock.nowMs();
      if (leftMs > 0) await this.waitUntil(() => pool.freeMib >= needMib || !stillWanted() || this.closed || shortNow().length > 0 || allReached(), leftMs);
      if (pool.freeMib >= needMib && stillWanted()) return;
      if (!stillWanted() || this.closed) {
        failure = 'given up';
        break;
      }
      const short = shortNow();
      if (short.length === 0 && !allReached()) {
        failure = `after ${Math.round(this.options.timeoutMs / 1000)} s, ${this.shortfall(needMib, sent, heldAtStartMib)}`;
        break;
      }
      // A guest that stopped short keeps what it pinned: its target comes
      // down to its actual (no cost: it holds the same) and it drops out.
      const reasons: string[] = [];
      for (const [name] of short) {
        const p = pool.get(name);
        const reason = this.host.guest(name)?.status?.reason ?? 'unknown';
        log.info({ vm: name, actualMib: p?.actualMib, reason }, 'a VM stopped short of its reclaim target; planning over the others');
        if (p && p.actualMib < p.targetMib) sent.set(name, this.host.applyTarget(name, Math.max(p.actualMib, original.get(name) ?? 0), 'reclaim'));
        dropped.add(name);
        reasons.push(`VM '${name}' stopped short of its new balloon (${reason})`);
      }
      try {
        plan = pool.planReclaim(needMib, [...dropped, ...this.heldBack()]);
      } catch (err) {
        failure = `${[...reasons, this.shortfall(needMib, sent, heldAtStartMib)].join('; ')}; ${(err as Error).message}`;
        break;
      }
      if (plan.targets.size === 0) {
        failure = [...reasons, this.shortfall(needMib, sent, heldAtStartMib)].join('; ');
        break;
      }
    }
    this.rollBack(original, sent);
    if (!stillWanted() || this.closed) throw new HostError('not_running', `${what}: given up, the VM went away`);
    throw new HostError('pool_exhausted', `${what}: ${needMib} MiB needed, ${pool.freeMib} MiB free: ${failure}; the reclaim was undone`);
  }

  /**
   * Whether `needMib` could be made free now (the free quota, or a reclaim
   * from the running VMs except `exclude` within their caps and floors):
   * throws pool_exhausted with the true figures and who holds what if not.
   * Nothing moves; startvm asks it before it spawns anything.
   */
  assertFundable(needMib: number, exclude: readonly string[], what: string): void {
    if (this.host.pool.freeMib >= needMib) return;
    this.planOrRefuse(needMib, exclude, what);
  }

  private planOrRefuse(needMib: number, exclude: readonly string[], what: string): ReturnType<Pool['planReclaim']> {
    const { pool } = this.host;
    const excluded = [...exclude, ...this.heldBack()];
    try {
      return pool.planReclaim(needMib, excluded);
    } catch (err) {
      throw new HostError('pool_exhausted', `${what}: ${(err as Error).message}; ${pool.holdersText(excluded)}`, { cause: err });
    }
  }

  /**
   * Pays back an overcommit (guests that took memory back on their own) from
   * the other running VMs, whatever their policy: queued once under the quota
   * lock, and it waits for the guests like any reclaim, but never rolls back
   * (what it pins is owed).
   */
  payBack(): void {
    if (this.paybackQueued || this.closed || this.host.pool.overcommitMib === 0) return;
    this.paybackQueued = true;
    void this.withQuotaLock(async () => {
      this.paybackQueued = false;
      const { pool } = this.host;
      const owedMib = pool.overcommitMib;
      if (owedMib === 0 || this.closed) return;
      let plan: ReturnType<Pool['planReclaim']>;
      try {
        plan = pool.planReclaim(0, this.heldBack());
      } catch (err) {
        const problem = (err as Error).message;
        if (problem !== this.paybackProblem) this.options.log.warn({ owedMib }, `the pool is overcommitted and cannot be paid back yet: ${problem}`);
        this.paybackProblem = problem;
        return;
      }
      this.paybackProblem = undefined;
      const sent = new Map<string, number>();
      for (const [name, targetMib] of plan.targets) sent.set(name, this.host.applyTarget(name, targetMib, 'payback'));
      this.options.log.info({ owedMib, targets: Object.fromEntries(plan.targets) }, 'paying back the memory guests took back on their own');
      await this.waitUntil(
        () => this.closed || pool.overcommitMib === 0 || [...sent].every(([n, g]) => isShort(this.host.guest(n), g) || reached(pool, n)),
        this.options.timeoutMs,
      );
    });
  }

  /**
   * Running guests that hold their balloon below its target on their own
   * (short of it, or deflating under pressure): asking them for more would be
   * counted and never pinned.
   */
  private heldBack(): string[] {
    const { pool } = this.host;
    return pool.names().filter((name) => {
      const v = pool.get(name);
      const g = this.host.guest(name);
      const st = g?.status;
      // Its newest word, even for an older target: a guest under pressure
      // says so again for the next one.
      if (!v || !st || v.actualMib >= v.targetMib) return false;
      return st.state === 'short' || st.reason === 'guest_pressure';
    });
  }

  /** Puts back every target this reclaim raised and nobody has replaced since; never refused for quota. */
  private rollBack(original: ReadonlyMap<string, number>, sent: ReadonlyMap<string, number>): void {
    for (const [name, previousMib] of original) {
      const g = this.host.guest(name);
      if (!g || g.generation !== sent.get(name)) continue;
      try {
        this.host.applyTarget(name, previousMib, 'rollback');
      } catch (err) {
        // Only a guest that stopped meanwhile gets here: what it held is back in the pool.
        this.options.log.warn({ vm: name, err: (err as Error).message }, 'could not put a reclaimed balloon back');
      }
    }
    if (this.host.pool.overcommitMib > 0) this.payBack();
  }

  /** Names the real shortfall: who has not pinned what it was asked, and who took memory back on its own meanwhile. */
  private shortfall(needMib: number, sent: ReadonlyMap<string, number>, heldAtStartMib: ReadonlyMap<string, number>): string {
    const { pool } = this.host;
    const missingMib = needMib - pool.freeMib;
    const lagging: string[] = [];
    const tookBack: string[] = [];
    for (const name of pool.names()) {
      const v = pool.get(name);
      if (!v) continue;
      const grownMib = v.heldMib - (heldAtStartMib.get(name) ?? v.heldMib);
      if (grownMib > 0) tookBack.push(`VM '${name}' took back ${grownMib} MiB on its own`);
      else if (sent.has(name) && v.actualMib < v.targetMib) lagging.push(`VM '${name}' pinned ${v.actualMib} of ${v.targetMib} MiB`);
    }
    const who = lagging.length > 0 ? lagging.join(', ') : 'every VM asked reached its target';
    return `${missingMib} MiB still missing: ${who}${tookBack.length > 0 ? `; meanwhile ${tookBack.join(', ')}` : ''}`;
  }
}

function isShort(guest: { generation: number; status: BalloonStatus | undefined } | undefined, generation: number): boolean {
  const st = guest?.status;
  return st !== undefined && st.generation === generation && st.state === 'short';
}

function reached(pool: Pool, name: string): boolean {
  const v = pool.get(name);
  return v === undefined || v.actualMib >= v.targetMib;
}
