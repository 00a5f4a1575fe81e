// The balloon's worker threads: they commit (pin and touch) chunks so that
// the main thread stays free to hear the next target. The workers share one
// list of chunks per step and claim them one at a time from a shared counter
// (Atomics), so a worker that the scheduler holds back costs the step only
// its current chunk, never half the step. This module owns their life and
// every way one can fail; a failure never stalls the balloon: what the failed
// worker had not marked committed counts as not done and is handed back (it
// may have touched some), a problem is reported and a new worker takes its
// place, until too many have failed and the engine commits on the main thread.
import { Worker } from 'node:worker_threads';
import { AgentError } from '../errors.js';
import { releaseChunk, type Chunk } from './chunk-stack.js';

/** Worker failures after which the pool stops restarting workers (the main thread commits). */
const MAX_WORKER_FAILURES = 3;

/** What a worker answers for one job (see touch-worker.mjs); the chunks it committed are marked on the job's board. */
interface WorkerReply {
  id: number;
  /** Chunks this worker committed. */
  done: number;
  /** errno of its first refused mlock (0: none). */
  lockErrno: number;
}

/** What a step's workers did: the chunks committed (each pinned or not), in the step's order. */
export interface DispatchResult {
  committed: Array<{ chunk: Chunk; locked: boolean }>;
  /** The chunks not committed, their pages not held (never touched, or handed back): reusable. */
  notCommitted: Chunk[];
  /** errno of the first refused mlock (0: none). */
  lockErrno: number;
}

/** A chunk's state on a job's board: not committed (cancelled, or its worker failed). */
const NOT_COMMITTED = 0;
/** …committed and pinned. */
const COMMITTED_LOCKED = 2;

/** Options of a WorkerPool. */
export interface WorkerPoolOptions {
  /** Threads to keep (0: none; the engine commits on the main thread). */
  count: number;
  /** The worker script (touch-worker.mjs, or a test fixture speaking its messages) and extra workerData. */
  script: { url: URL; data?: Record<string, unknown> };
  /** Shared [epoch]: bumping it cancels the workers' jobs at the next chunk. */
  control: Int32Array;
  /** Whether the engine pins at all (passed to the workers at start-up). */
  lock: boolean;
  /** A job unanswered this long (plus 10 ms per MiB of the job) counts as a stuck worker. */
  jobTimeoutMs: number;
  /** A worker failed (code `worker_failed`); never throws into the pool. */
  onProblem: (err: AgentError) => void;
  /** Chunks of a failed job were handed back, in MiB (for the GC's account). */
  onReleased: (mib: number) => void;
  /** Whether the engine is closing (changes what a failure report says). */
  closing: () => boolean;
}

/** A job a worker owes us: how to answer it and its watchdog. */
interface PendingJob {
  resolve: (reply: WorkerReply) => void;
  watchdog: NodeJS.Timeout;
}

interface WorkerSlot {
  /** 1, 2, …: names the worker in problem reports. */
  serial: number;
  worker: Worker;
  pending: Map<number, PendingJob>;
  /** Failed (crashed, exited, stuck): out of the pool, never sent another job. */
  dead: boolean;
}

/** A reply that commits nothing: what a failed worker's jobs count as. */
const NOTHING_DONE: Omit<WorkerReply, 'id'> = { done: 0, lockErrno: 0 };

/** The worker threads that commit balloon chunks, with their failure handling. */
export class WorkerPool {
  private slots: WorkerSlot[] = [];
  private serial = 0;
  private failures = 0;
  private nextJobId = 1;
  private closed = false;

  constructor(private readonly options: WorkerPoolOptions) {}

  /** Whether workers commit pages (some asked for, and not too many failed). */
  get usable(): boolean {
    return this.options.count > 0 && this.failures < MAX_WORKER_FAILURES && !this.closed;
  }

  /** How many workers a job is shared among. */
  get size(): number {
    return this.options.count;
  }

  /**
   * Starts the workers and waits until each has loaded (and bound libc where
   * it will pin): the threads' memory is then part of the agent before the
   * first target, not a surprise inside the first inflate. Never rejects; a
   * worker that fails to start is reported and replaced at the next job.
   */
  async warmUp(): Promise<void> {
    if (!this.usable) return;
    this.fill();
    await Promise.all(this.slots.map((slot) => this.send(slot, [], newBoard(0), 0, false, 1)));
  }

  /**
   * Hands a step's chunks to every worker at once; each claims the next
   * unclaimed chunk until none is left (or a newer target bumps the epoch).
   * Resolves when all have answered or failed. Chunks not marked committed
   * come back as not done, and where a worker failed, or the chunk's range
   * was marked locked on fault (`chunk.locked`: it counts in VmLck until
   * unlocked), they are handed back first (a failed worker may have touched
   * some): the caller commits the missing MiB again (on a restarted worker,
   * or on the main thread once workers have failed too often). `lock`: the
   * workers mlock each chunk not marked (where mlock2 is missing).
   */
  async dispatch(chunks: Chunk[], epoch: number, lock: boolean, pageWords: number): Promise<DispatchResult> {
    if (chunks.length === 0) return { committed: [], notCommitted: [], lockErrno: 0 };
    this.fill();
    const board = newBoard(chunks.length);
    const failuresBefore = this.failures;
    const replies = await Promise.all(this.slots.map((slot) => this.send(slot, chunks, board, epoch, lock, pageWords)));
    const someFailed = this.failures > failuresBefore;
    const committed: DispatchResult['committed'] = [];
    const notCommitted: Chunk[] = [];
    let releasedMib = 0;
    chunks.forEach((chunk, i) => {
      const state = Atomics.load(board, 1 + i);
      // A chunk the main thread marked locked on fault is pinned once committed, whatever the worker said.
      if (state !== NOT_COMMITTED) {
        committed.push({ chunk, locked: state === COMMITTED_LOCKED || chunk.locked });
        return;
      }
      if (someFailed || chunk.locked) {
        // A failed worker may have touched it; a marked range counts in VmLck until it is unlocked.
        releaseChunk(chunk);
        chunk.locked = false;
        releasedMib += chunk.sizeMib;
      }
      notCommitted.push(chunk);
    });
    if (releasedMib > 0) this.options.onReleased(releasedMib);
    return { committed, notCommitted, lockErrno: replies.find((r) => r.lockErrno !== 0)?.lockErrno ?? 0 };
  }

  /** Asks every worker to collect its garbage (its clones of deflated chunks keep their memory mapped until then). */
  collect(): void {
    for (const slot of this.slots) slot.worker.postMessage({ gc: true });
  }

  /** Gives up every worker that still owes a job (close() found them stuck). */
  failBusy(why: string): void {
    for (const slot of [...this.slots]) {
      if (slot.pending.size > 0) this.fail(slot, why);
    }
  }

  /** Stops every worker; waits at most `waitMs` for threads to terminate (one stuck in native code may never). */
  async close(waitMs: number): Promise<void> {
    this.closed = true;
    const slots = this.slots;
    this.slots = [];
    // Jobs still owed (the start-up call of an engine closed at once) are
    // answered now: a watchdog left behind would hold the process open.
    for (const slot of slots) {
      for (const [id, job] of slot.pending) {
        clearTimeout(job.watchdog);
        job.resolve({ id, ...NOTHING_DONE });
      }
      slot.pending.clear();
    }
    await Promise.all(
      slots.map((s) =>
        withTimeout(
          s.worker.terminate().catch(() => undefined),
          waitMs,
        ),
      ),
    );
  }

  private send(slot: WorkerSlot, list: Chunk[], board: Int32Array, epoch: number, lock: boolean, pageWords: number): Promise<WorkerReply> {
    return new Promise<WorkerReply>((resolve) => {
      const id = this.nextJobId++;
      const jobMib = list.reduce((sum, c) => sum + c.sizeMib, 0);
      const timeoutMs = this.options.jobTimeoutMs + jobMib * 10;
      // A worker that neither answers nor dies (stuck in native code, a
      // message it could not read) would hold the balloon forever.
      const watchdog = setTimeout(() => this.fail(slot, `did not answer a job of ${jobMib} MiB within ${timeoutMs} ms`), timeoutMs);
      if (slot.dead) {
        clearTimeout(watchdog);
        resolve({ id, ...NOTHING_DONE });
        return;
      }
      slot.pending.set(id, { resolve, watchdog });
      // Keep the process alive while a worker owes us chunks.
      slot.worker.ref();
      try {
        slot.worker.postMessage({ id, epoch, pageWords, lock, board, jobs: list.map((c) => ({ sab: c.sab, seed: c.seed, locked: c.locked })) });
      } catch (err) {
        this.fail(slot, 'could not be sent a job', err);
      }
    });
  }

  /** Fills the pool up to its count (a failed worker's place is taken by a new one). */
  private fill(): void {
    while (this.usable && this.slots.length < this.options.count) {
      const serial = ++this.serial;
      let worker: Worker;
      try {
        worker = new Worker(this.options.script.url, {
          workerData: { ...this.options.script.data, control: this.options.control, lock: this.options.lock },
        });
      } catch (err) {
        this.noteFailure(serial, 'could not be started', err);
        continue;
      }
      const slot: WorkerSlot = { serial, worker, pending: new Map(), dead: false };
      worker.on('message', (m: WorkerReply) => {
        const job = slot.pending.get(m.id);
        if (!job) return;
        clearTimeout(job.watchdog);
        slot.pending.delete(m.id);
        if (slot.pending.size === 0) slot.worker.unref();
        job.resolve(m);
      });
      // Every way a worker can end or go deaf: without these, a job it owed
      // would never be answered and the balloon would stall for good.
      worker.on('error', (err) => this.fail(slot, 'failed', err));
      worker.on('messageerror', (err) => this.fail(slot, 'sent a reply that could not be read', err));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(slot, `exited with code ${code}`);
      });
      // Idle workers must not keep the process alive.
      worker.unref();
      this.slots.push(slot);
    }
  }

  /**
   * Takes a failed worker out of the pool: its jobs are answered as done
   * by the others (dispatch hands back what nobody marked committed), and
   * the failure is reported. Idempotent.
   */
  private fail(slot: WorkerSlot, what: string, cause?: unknown): void {
    if (slot.dead) return;
    slot.dead = true;
    this.slots = this.slots.filter((s) => s !== slot);
    for (const job of slot.pending.values()) clearTimeout(job.watchdog);
    const jobs = [...slot.pending.entries()];
    slot.pending.clear();
    // Not awaited: a thread stuck in native code may never finish terminating.
    slot.worker.terminate().catch(() => undefined);
    slot.worker.unref();
    this.noteFailure(slot.serial, jobs.length > 0 ? `${what} (what it had not committed is committed again)` : what, cause);
    for (const [id, job] of jobs) job.resolve({ id, ...NOTHING_DONE });
  }

  private noteFailure(serial: number, what: string, cause?: unknown): void {
    this.failures++;
    const next = this.options.closing()
      ? 'the balloon is closing'
      : this.usable
        ? 'a new worker takes its place'
        : `${this.failures} worker failures: committing on the main thread from now on`;
    const why = cause === undefined ? '' : `: ${cause instanceof Error ? cause.message : String(cause)}`;
    this.options.onProblem(new AgentError('worker_failed', `balloon worker ${serial} ${what}${why}; ${next}`, cause === undefined ? undefined : { cause }));
  }
}

/** A job's board: [0] the next chunk to claim, [1 + i] chunk i's state (0 not committed, 1 committed, 2 committed and pinned). */
function newBoard(chunkCount: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * (1 + chunkCount)));
}

/** The promise's value, or 'timeout' after timeoutMs. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
