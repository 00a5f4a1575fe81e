// The balloon's parallel fault-in: each chunk's pages are faulted in by one
// libc call (madvise MADV_POPULATE_WRITE, or mlock where mlock2 is missing)
// made asynchronously through koffi on libuv's thread pool, a few calls in
// flight at once; the main thread writes each chunk's words when its call
// returns (256 stores per MiB: the pages are already there). No worker
// thread, so no isolate and no module heap of our own: two Workers cost the
// idle agent ~17 MiB of RSS; libuv's threads are Node's own, started once.
//
// The main thread stays free between calls, so a newer target is heard at
// once: a bumped epoch stops the issuing at the next chunk (the calls in
// flight finish and count). This module owns every way a call can fail; a
// failure never stalls the balloon: the failed chunk counts as not done and
// is handed back (the call may have faulted some of it in), a problem is
// reported (`worker_failed`), and after too many failures the engine
// commits on the main thread.
import { AgentError } from '../errors.js';
import { type AsyncNativeDone, type FaultInHow, faultInAsync, startAsyncThreads } from '../native/libc.js';
import { releaseChunk, type Chunk } from './chunk-stack.js';
import { touchPages } from './pages.mjs';

/** Failed calls after which the pool stops (the main thread commits). */
const MAX_CALL_FAILURES = 3;
/** errno of madvise on a kernel without MADV_POPULATE_WRITE (before 5.14). */
const EINVAL = 22;

/** One async fault-in of a chunk's memory; `done` runs on the main thread (see faultInAsync). Tests pass faulty ones. */
export type FaultInCall = (mem: Uint8Array, how: FaultInHow, done: AsyncNativeDone) => void;

/** What a step's calls did: the chunks committed (each pinned or not), in the step's order. */
export interface DispatchResult {
  committed: Array<{ chunk: Chunk; locked: boolean }>;
  /** The chunks not committed, their pages not held (never faulted in, or handed back): reusable. */
  notCommitted: Chunk[];
  /** errno of the first refused mlock (0: none). */
  lockErrno: number;
}

/** Options of a FaultInPool. */
export interface FaultInPoolOptions {
  /** Lanes (one per core, like the C reference's threads); 0: none, the engine commits on the main thread. */
  lanes: number;
  /** Calls kept in flight per lane: a lane's next call is queued while its last returns. */
  callsPerLane: number;
  /** The call (default faultInAsync: libc through koffi). */
  call?: FaultInCall;
  /** Whether native calls exist at all (false: the pool is unusable from the start). */
  native: boolean;
  /** Shared [epoch]: bumping it stops the issuing of a step's calls at the next chunk. */
  control: Int32Array;
  /** A call unanswered this long (plus 10 ms per MiB of its chunk) counts as stuck. */
  callTimeoutMs: number;
  /** A call failed (code `worker_failed`); never throws into the pool. */
  onProblem: (err: AgentError) => void;
  /** Chunks of failed calls were handed back, in MiB (for the GC's account). */
  onReleased: (mib: number) => void;
  /** Whether the engine is closing (changes what a failure report says). */
  closing: () => boolean;
}

/** A chunk's state in a step: not committed (not issued, cancelled, failed), committed, pinned, or given up (stuck call). */
const ChunkState = {
  NotCommitted: 0,
  Committed: 1,
  Pinned: 2,
  /** Its call never returned: released, and its memory never reused (the call may still write to it). */
  Abandoned: 3,
} as const;

/** A call in flight: its chunk's index in the step and its watchdog. */
interface InFlight {
  index: number;
  watchdog: NodeJS.Timeout;
}

/** The async fault-in of balloon chunks on libuv's thread pool, with its failure handling. */
export class FaultInPool {
  private failures = 0;
  private closed = false;
  /** False on a kernel without MADV_POPULATE_WRITE: the engine then commits on the main thread. */
  private populateWorks: boolean;
  private readonly call: FaultInCall;
  /** Gives up the calls of the step in flight (close() found them stuck). */
  private abandonStep: ((why: string) => void) | null = null;
  /**
   * Chunks whose call never returned, kept referenced for good: were V8 to
   * free their buffer, a call that wakes up later would populate (or pin)
   * whatever the kernel mapped there next. At most a few (the pool stops
   * after MAX_CALL_FAILURES), and their pages were released.
   */
  private readonly abandoned: Chunk[] = [];

  constructor(private readonly options: FaultInPoolOptions) {
    this.populateWorks = options.native;
    this.call = options.call ?? faultInAsync;
  }

  /** Whether async calls commit pages (lanes asked for, native calls there, not too many failures). */
  get usable(): boolean {
    return this.options.lanes > 0 && this.populateWorks && this.failures < MAX_CALL_FAILURES && !this.closed;
  }

  /** How many lanes a step is shared among (the engine sizes its steps by it). */
  get size(): number {
    return this.options.lanes;
  }

  /**
   * Starts libuv's thread pool now (one trivial call), so that what its
   * threads cost is the agent's before the first target, not a surprise
   * inside the first inflate. Never rejects.
   */
  warmUp(): Promise<void> {
    if (!this.usable) return Promise.resolve();
    return new Promise((resolve) => startAsyncThreads(resolve));
  }

  /**
   * Faults a step's chunks in, `lanes × callsPerLane` calls in flight, and
   * writes each chunk's words as its call returns. Stops issuing when a
   * newer target bumps the epoch or the pool becomes unusable. Chunks not
   * committed come back as not done, and where their call failed, or their
   * range was marked locked on fault (`chunk.locked`: it counts in VmLck
   * until unlocked), they are handed back first. `lock`: each call mlocks
   * its chunk (where mlock2 is missing) instead of populating it.
   */
  dispatch(chunks: Chunk[], epoch: number, lock: boolean, pageWords: number): Promise<DispatchResult> {
    if (chunks.length === 0) return Promise.resolve({ committed: [], notCommitted: [], lockErrno: 0 });
    const states = new Uint8Array(chunks.length);
    const failed = new Uint8Array(chunks.length);
    const maxInFlight = Math.max(1, this.options.lanes * this.options.callsPerLane);
    const flying = new Map<number, InFlight>();
    let next = 0;
    let lockErrno = 0;
    let locking = lock;
    return new Promise<DispatchResult>((resolve) => {
      const settle = () => {
        this.abandonStep = null;
        resolve(this.collectStep(chunks, states, failed, lockErrno));
      };
      const finish = (index: number, how: FaultInHow, err: unknown, ok: boolean, errno: number) => {
        const call = flying.get(index);
        // A late answer of a call given up on: its chunk is gone already.
        if (!call) return;
        clearTimeout(call.watchdog);
        flying.delete(index);
        const chunk = chunks[index]!;
        if (err) {
          failed[index] = 1;
          this.noteFailure(`a fault-in call failed (its chunk is committed again)`, err);
        } else {
          let pinned = chunk.locked;
          if (how === 'mlock') {
            if (ok) pinned = true;
            else if (lockErrno === 0) {
              // Refused (RLIMIT_MEMLOCK, EPERM): the rest of the step goes unpinned; the errno is said once.
              lockErrno = errno;
              locking = false;
            }
          } else if (!ok && errno === EINVAL) {
            // A kernel before 5.14: this chunk's words fault it in below; the engine commits the rest on the main thread.
            this.populateWorks = false;
          }
          // Anything else (ENOMEM): the words fault the pages in, or fail, as touching would have.
          touchPages(chunk.sab, chunk.seed, pageWords);
          states[index] = pinned ? ChunkState.Pinned : ChunkState.Committed;
        }
        issue();
      };
      const giveUp = (index: number, what: string) => {
        const call = flying.get(index);
        if (!call) return;
        clearTimeout(call.watchdog);
        flying.delete(index);
        states[index] = ChunkState.Abandoned;
        const chunk = chunks[index]!;
        this.abandoned.push(chunk);
        // The call may go on faulting pages in: a few pages of a buffer never reused.
        releaseChunk(chunk);
        chunk.locked = false;
        this.options.onReleased(chunk.sizeMib);
        this.noteFailure(what);
      };
      const issue = () => {
        while (flying.size < maxInFlight && next < chunks.length && this.usable && Atomics.load(this.options.control, 0) === epoch) {
          const index = next++;
          const chunk = chunks[index]!;
          const how: FaultInHow = locking && !chunk.locked ? 'mlock' : 'populate';
          const timeoutMs = this.options.callTimeoutMs + chunk.sizeMib * 10;
          // A call that never returns (stuck in the kernel) would hold the balloon forever.
          const watchdog = setTimeout(() => {
            giveUp(index, `a fault-in call did not return within ${timeoutMs} ms`);
            issue();
          }, timeoutMs);
          flying.set(index, { index, watchdog });
          try {
            this.call(chunk.bytes, how, (err, r) => finish(index, how, err, r.ok, r.ok ? 0 : r.errno));
          } catch (err) {
            // Not even queued (koffi's queue full, say): nothing touched it.
            clearTimeout(watchdog);
            flying.delete(index);
            this.noteFailure('a fault-in call could not be made', err);
          }
        }
        if (flying.size === 0) settle();
      };
      this.abandonStep = (why) => {
        for (const index of [...flying.keys()]) giveUp(index, why);
        if (flying.size === 0) settle();
      };
      issue();
    });
  }

  /** Gives up every call still in flight (close() found them stuck). */
  failBusy(why: string): void {
    this.abandonStep?.(`a fault-in call ${why}`);
  }

  /** Stops the pool: no further calls. Calls in flight (stuck) are given up; nothing is waited for. */
  close(): void {
    this.closed = true;
    this.abandonStep?.('was given up: the balloon is closing');
  }

  /** Sorts a finished step's chunks; hands back what must not stay held. */
  private collectStep(chunks: Chunk[], states: Uint8Array, failed: Uint8Array, lockErrno: number): DispatchResult {
    const committed: DispatchResult['committed'] = [];
    const notCommitted: Chunk[] = [];
    let releasedMib = 0;
    chunks.forEach((chunk, i) => {
      const state = states[i];
      if (state === ChunkState.Abandoned) return;
      if (state !== ChunkState.NotCommitted) {
        committed.push({ chunk, locked: state === ChunkState.Pinned });
        return;
      }
      if (failed[i] === 1 || chunk.locked) {
        // A failed call may have faulted some in; a marked range counts in VmLck until it is unlocked.
        releaseChunk(chunk);
        chunk.locked = false;
        releasedMib += chunk.sizeMib;
      }
      notCommitted.push(chunk);
    });
    if (releasedMib > 0) this.options.onReleased(releasedMib);
    return { committed, notCommitted, lockErrno };
  }

  private noteFailure(what: string, cause?: unknown): void {
    this.failures++;
    const next = this.options.closing()
      ? 'the balloon is closing'
      : this.usable
        ? 'the next calls go on'
        : `${this.failures} failed calls: committing on the main thread from now on`;
    const why = cause === undefined ? '' : `: ${cause instanceof Error ? cause.message : String(cause)}`;
    this.options.onProblem(new AgentError('worker_failed', `balloon fault-in: ${what}${why}; ${next}`, cause === undefined ? undefined : { cause }));
  }
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
