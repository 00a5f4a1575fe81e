// The balloon: memory taken from the guest in chunks, each committed page by
// page with distinct non-zero words (so neither the zero page nor KSM can
// quietly undo it) and pinned with mlock where permitted; deflated last-in
// first-out with the pages handed back to the kernel at once.
//
// This file is the loop: it moves the balloon toward the newest target,
// re-reading the target between steps of one chunk per thread, so a new
// target takes effect at the next chunk in either direction (latest wins).
// The chunks live in ./chunk-stack.ts, the async calls that fault them in
// ./fault-in-pool.ts, the floor in ./floor.ts, the deliberate GCs in
// ./gc-schedule.ts and the page-touching code in ./pages.mjs.
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { BYTES_PER_MIB, type BalloonState, type BalloonStatus, type LockState, type ShortfallReason } from '@memballoon/protocol';
import { AgentError } from '../errors.js';
import type { DomainSource } from '../domain/source.js';
import { M_MMAP_THRESHOLD, mallopt, mlock, mlockOnFault, munlock, nativeAvailable, nativeUnavailableReason, pageSizeBytes } from '../native/libc.js';
import { allocateChunkMemory, ChunkStack, type Chunk } from './chunk-stack.js';
import { FloorGuard } from './floor.js';
import { GcSchedule } from './gc-schedule.js';
import { touchPages } from './pages.mjs';
import { type FaultInCall, FaultInPool, withTimeout } from './fault-in-pool.js';

/** Options of a BalloonEngine; every field has a default. */
export interface BalloonEngineOptions {
  /** Size of one chunk, in MiB (default 1, VirtualBox's). */
  chunkMib?: number;
  /** Pin chunks with mlock where permitted (default true). */
  lock?: boolean;
  /** The guest's memory domain, for the floor and pressure checks (default: none, no floor). */
  domain?: DomainSource | null;
  /** Largest target accepted, in MiB (default: the domain's total, else unlimited). */
  maxTargetMib?: number;
  /** Free-memory floor of the domain, in MiB (0 or absent: max(64 MiB, 5 % of the domain)). */
  floorMib?: number;
  /** Deflate by itself when the domain falls below the floor (default true). */
  deflateOnPressure?: boolean;
  /** How often the pressure check reads the domain, in ms (default 250). */
  pressureCheckIntervalMs?: number;
  /**
   * Lanes of parallel fault-in (default: one per core, at most 4; 0: all on
   * the main thread). Each lane keeps two async libc calls in flight on
   * libuv's thread pool; no thread of the engine's own (the name is kept
   * from when each lane was a worker thread).
   */
  workerThreads?: number;
  /** Progress is reported at least every this many MiB while moving (default 64). */
  progressEveryMib?: number;
  /** …and at least every this many ms while moving (default 100). */
  progressEveryMs?: number;
  /** Most MiB freed between two looks at the target while deflating (default 64). */
  deflateStepMib?: number;
  /** A fault-in call unanswered this long (plus 10 ms per MiB of its chunk) counts as stuck (default 10 000). */
  workerJobTimeoutMs?: number;
  /**
   * Set glibc's mmap threshold to 128 KiB (mallopt, process-wide), so large
   * allocations of the rest of the process return to the kernel when freed.
   * Default false: a library does not retune its embedder's malloc; the
   * balloon-agent CLI turns it on.
   */
  tuneMalloc?: boolean;
  /** Tests: pin as where mlock2 is missing (false: each fault-in call mlocks its chunk; default true). */
  lockOnFault?: boolean;
  /** Tests: another fault-in call (a faulty one), instead of libc's through koffi. */
  faultInCall?: FaultInCall;
}

/** Events of a BalloonEngine. */
export interface BalloonEngineEvents {
  /** A new target was accepted. */
  target: [target: { targetMib: number; generation: number }];
  /** Progress while moving, and the final status when the balloon settles. */
  progress: [status: BalloonStatus];
  /** The balloon stopped short of its target (the reason is in the status). */
  shortfall: [status: BalloonStatus];
  /** A chunk was committed (and pinned, where permitted); used to measure reaction time. */
  chunk: [info: { actualMib: number; locked: boolean }];
  /** Something went wrong that the balloon worked around (a fault-in call failed: code `worker_failed`). */
  problem: [err: AgentError];
}

/** MiB per lane in a target's first async step: small enough to report (and read the floor) often. */
const WORKER_BATCH_MIB = 16;
/**
 * …doubling each step of the same inflate up to this: at every step's end
 * the calls in flight drain while the main thread counts the chunks and
 * marks the next ones (a few chunks' time per step).
 */
const WORKER_BATCH_MAX_MIB = 64;
/** Async calls kept in flight per lane: one runs while the next waits on libuv's queue (measured: 4 on 2 cores beat 2 and 8). */
const CALLS_PER_LANE = 2;
/** How long close() lets the calls in flight return before it gives up on them. */
const CLOSE_WORKER_GRACE_MS = 1000;

/**
 * A balloon of pinned SharedArrayBuffer chunks, usable alone (without a
 * host). Drive it with setTarget; read `status`; listen to its events.
 */
export class BalloonEngine extends EventEmitter<BalloonEngineEvents> {
  /** Size of one chunk, in MiB. */
  readonly chunkMib: number;
  /** The system page size, in bytes. */
  readonly pageSizeBytes: number;
  private readonly stack: ChunkStack;
  private readonly pool: FaultInPool;
  private readonly floor: FloorGuard;
  private readonly gc: GcSchedule;
  private readonly lockWanted: boolean;
  private readonly domain: DomainSource | null;
  private readonly maxTargetMib: number;
  private deflateOnPressureValue: boolean;
  private readonly progressEveryMib: number;
  private readonly progressEveryMs: number;
  private readonly deflateStepMib: number;

  private targetMibValue = 0;
  private generationValue = 0;
  /** Upper bound set by guest pressure; lifted by the next target. */
  private pressureCapMib = Number.POSITIVE_INFINITY;
  private lockState: LockState;
  private lockDetail = '';
  private state: BalloonState = 'steady';
  private reason: ShortfallReason = 'none';
  private detail = '';

  private running: Promise<void> | null = null;
  /** Requests (targets, pressure caps, close) so far, and the count the running loop has seen. */
  private requests = 0;
  private requestsSeen = 0;
  /** Set by the first close(): from then on targets are refused. */
  private closeRequested = false;
  private closing: Promise<void> | null = null;
  private settleWaiters: Array<(s: BalloonStatus) => void> = [];
  private pressureTimer: NodeJS.Timeout | null = null;
  /** [epoch]; bumping it stops the issuing of fault-in calls at the next chunk. */
  private readonly control = new Int32Array(new SharedArrayBuffer(4));
  /** Where the balloon ends if the step in flight completes (0: none in flight). */
  private inflightEndMib = 0;
  /** MiB per lane in the inflate step running now (grows while the inflate goes on). */
  private laneBatchMib = WORKER_BATCH_MIB / 2;
  /** Whether mlock2(MLOCK_ONFAULT) works here; false: each fault-in call mlocks its chunk. */
  private lockOnFault: boolean;
  /** A target arrived since the last inflate step: commit its first chunk on the main thread, at once. */
  private freshTarget = false;
  private readonly started: Promise<void>;

  constructor(options: BalloonEngineOptions = {}) {
    super();
    this.chunkMib = options.chunkMib ?? 1;
    if (!Number.isInteger(this.chunkMib) || this.chunkMib < 1 || this.chunkMib > 1024) {
      throw new AgentError('invalid_config', `chunk size must be a whole number of MiB from 1 to 1024, not ${options.chunkMib}`);
    }
    this.pageSizeBytes = pageSizeBytes();
    this.stack = new ChunkStack(this.pageSizeBytes);
    this.domain = options.domain ?? null;
    this.maxTargetMib = options.maxTargetMib ?? this.domain?.totalMib ?? Number.MAX_SAFE_INTEGER;
    this.floor = new FloorGuard(this.domain, options.floorMib ?? 0, () => this.stack.handedOffMib);
    this.deflateOnPressureValue = options.deflateOnPressure ?? true;
    this.progressEveryMib = options.progressEveryMib ?? 64;
    this.progressEveryMs = options.progressEveryMs ?? 100;
    this.deflateStepMib = Math.max(this.chunkMib, options.deflateStepMib ?? 64);
    this.lockWanted = options.lock ?? true;
    this.lockOnFault = options.lockOnFault ?? true;
    this.lockState = this.lockWanted ? (nativeAvailable() ? 'unspecified' : 'unsupported') : 'disabled';
    if (this.lockState === 'unsupported') this.lockDetail = nativeUnavailableReason();
    if (this.lockState === 'unspecified') this.probeLock();
    this.pool = new FaultInPool({
      // One lane per core: the main thread mostly waits (and hears targets).
      lanes: Math.max(0, options.workerThreads ?? Math.min(4, availableParallelism())),
      callsPerLane: CALLS_PER_LANE,
      ...(options.faultInCall ? { call: options.faultInCall } : {}),
      native: nativeAvailable(),
      control: this.control,
      callTimeoutMs: options.workerJobTimeoutMs ?? 10_000,
      onProblem: (err) => this.report(err),
      onReleased: (mib) => this.gc.noteFreed(mib),
      closing: () => this.closeRequested,
    });
    this.gc = new GcSchedule(
      nativeAvailable(),
      () => this.running !== null,
      // Deflated chunks kept for reuse go with the collection, but one: the next target's first chunk.
      () => this.stack.trimSpares(this.chunkMib),
    );
    // The first target's first chunk, mapped and committed now: its reaction faults nothing.
    this.stack.keepWarm(this.chunkMib);
    // libuv's thread pool starts with the engine, not with the first target:
    // what it costs is then the agent's from the start, and the first
    // inflate grows the guest by the balloon alone.
    this.started = this.pool.warmUp();
    if (options.tuneMalloc && nativeAvailable()) {
      // After its first free, glibc raises its mmap threshold (up to 32 MiB),
      // and later SAB stores would come from the brk heap and might never
      // return to the kernel. Growable SABs avoid glibc anyway; this keeps
      // every other large allocation of the process returnable too.
      mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
    // A domain that does not see this process (its roots are another
    // process) counts the balloon as used: the balloon squeezes what it names.
    this.domain?.countBalloon?.(() => this.stack.residentMib * BYTES_PER_MIB);
    if (this.domain) {
      const interval = options.pressureCheckIntervalMs ?? 250;
      this.pressureTimer = setInterval(() => this.checkPressure(), interval);
      this.pressureTimer.unref();
    }
  }

  /** Tries mlock on one page, so that Hello and the first status tell the truth about pinning. */
  private probeLock(): void {
    const page = new Uint8Array(allocateChunkMemory(this.pageSizeBytes));
    const r = mlock(page);
    if (r.ok) {
      munlock(page);
      this.lockState = 'locked';
    } else {
      this.lockState = r.failure === 'unavailable' ? 'unsupported' : 'not_permitted';
      this.lockDetail = `balloon memory is not pinned: ${r.message} (needs root, CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)`;
    }
  }

  /** Resolves once the threads that fault chunks in (libuv's pool) have started; never rejects. */
  ready(): Promise<void> {
    return this.started;
  }

  /** The balloon right now (a copy). */
  get status(): BalloonStatus {
    return {
      generation: this.generationValue,
      targetMib: this.targetMibValue,
      actualMib: this.stack.actualMib,
      lockedMib: this.stack.lockedMib,
      // Absent rather than 0, as the wire decodes it.
      ...(this.stack.handedOffMib > 0 ? { handedOffMib: this.stack.handedOffMib } : {}),
      state: this.state,
      reason: this.reason,
      lock: this.lockState,
      detail: this.detail || this.lockDetail,
    };
  }

  /** Whether the balloon is moving toward its target. */
  get moving(): boolean {
    return this.running !== null;
  }

  /** The free-memory floor in MiB (0: none). */
  get floorMib(): number {
    return this.floor.floorMib;
  }

  /** Changes the guest protection (from the host's Welcome); floorMib 0 keeps the default. */
  setProtection(protection: { floorMib: number; deflateOnPressure: boolean }): void {
    this.floor.setFloor(protection.floorMib);
    this.deflateOnPressureValue = protection.deflateOnPressure;
  }

  /**
   * Moves the balloon toward targetMib. A generation older than the one
   * applied is ignored (returns false) unless `force` (a host's Welcome is
   * authoritative); without one, the next is used.
   * Throws AgentError('target_out_of_range') above the guest's memory.
   */
  setTarget(targetMib: number, generation?: number, force = false): boolean {
    // Closing counts as closed: a target accepted now would re-inflate a
    // balloon that close() is deflating, and close() would leave it held.
    if (this.closeRequested) throw new AgentError('closed', 'the balloon is closed');
    if (!Number.isSafeInteger(targetMib) || targetMib < 0) {
      throw new AgentError('target_out_of_range', `a balloon target must be a whole number of MiB, not ${targetMib}`);
    }
    if (targetMib > this.maxTargetMib) {
      throw new AgentError('target_out_of_range', `a balloon of ${targetMib} MiB is above the guest's memory of ${this.maxTargetMib} MiB`);
    }
    const gen = generation ?? this.generationValue + 1;
    if (gen < this.generationValue && !force) return false;
    this.generationValue = gen;
    this.targetMibValue = targetMib;
    this.pressureCapMib = Number.POSITIVE_INFINITY;
    this.floor.reset();
    this.gc.noteActivity();
    this.freshTarget = true;
    this.requests++;
    this.emit('target', { targetMib, generation: gen });
    this.cancelIfOvershooting();
    this.kick();
    return true;
  }

  /** MiB of the balloon handed off to the host's limit (pages released, still counted in actualMib). */
  get handedOffMib(): number {
    return this.stack.handedOffMib;
  }

  /**
   * The host has lowered this guest's memory limit by what it takes over:
   * releases the newest chunks (munlock, then MADV_DONTNEED so the pages
   * leave the guest's cgroup at once) until handedOffMib of the balloon are
   * handed off. Absolute and idempotent: a value at or below what is handed
   * off already changes nothing, and only whole chunks held now are released
   * (never chunks a fault-in call is still committing), so the result may fall
   * short of the request; the status says what was done. actualMib does not
   * change. Synchronous: a GiB of pages is released in tens of ms.
   */
  handOff(handedOffMib: number): BalloonStatus {
    if (this.closeRequested) throw new AgentError('closed', 'the balloon is closed');
    if (!Number.isSafeInteger(handedOffMib) || handedOffMib < 0) {
      throw new AgentError('target_out_of_range', `a hand-off must be a whole number of MiB, not ${handedOffMib}`);
    }
    const releasedMib = this.stack.handOffNewest(handedOffMib);
    if (releasedMib > 0) {
      // The pages are gone already; a GC only unmaps the spent buffers.
      this.gc.noteFreed(releasedMib);
      if (!this.running) this.gc.afterDeflate(this.stack.actualMib);
      this.floor.reset();
    }
    return this.status;
  }

  /** Resolves with the status once the balloon stops moving. */
  settled(): Promise<BalloonStatus> {
    if (!this.running) return Promise.resolve(this.status);
    return new Promise((resolve) => this.settleWaiters.push(resolve));
  }

  /**
   * Checks that every page of the balloon holds its distinct non-zero word
   * (what the kernel has committed, not bookkeeping). Returns the number of
   * pages checked, or throws naming the first bad page.
   */
  verifyPages(): number {
    return this.stack.verifyPages();
  }

  /**
   * Deflates everything, stops the fault-in calls and timers. The engine
   * cannot be used after. Always finishes: calls that do not return within a
   * grace period are given up (their chunks released), and the deflate runs
   * on the main thread.
   */
  close(): Promise<void> {
    if (!this.closing) {
      // Before shutdown() starts: its first steps may run listeners that set targets.
      this.closeRequested = true;
      this.closing = this.shutdown();
    }
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.pressureTimer) clearInterval(this.pressureTimer);
    this.pressureTimer = null;
    this.targetMibValue = 0;
    this.pressureCapMib = Number.POSITIVE_INFINITY;
    this.requests++;
    this.cancelIfOvershooting();
    this.kick();
    const settled = this.settled();
    while ((await withTimeout(settled, CLOSE_WORKER_GRACE_MS)) === 'timeout') {
      // A call that has not returned is stuck: its chunk counts as not
      // done, so the loop goes on (deflating needs no call).
      this.pool.failBusy(`did not return within ${CLOSE_WORKER_GRACE_MS} ms of close`);
    }
    this.gc.stop();
    this.stack.trimSpares(0);
    this.gc.collectNow();
    this.pool.close();
  }

  private kick(): void {
    if (this.running) return;
    this.running = this.run()
      .catch((err: unknown) => this.stopOnError(err))
      .finally(() => {
        this.running = null;
        // A request that came after the loop's last look (from a listener of
        // the final progress, say) must not be lost: move again before
        // telling anyone the balloon has settled.
        if (this.requests !== this.requestsSeen && this.goalMib() !== this.stack.actualMib) {
          this.kick();
          return;
        }
        const status = this.status;
        const waiters = this.settleWaiters;
        this.settleWaiters = [];
        for (const w of waiters) w(status);
      });
  }

  /** The loop failed unexpectedly: the balloon stays where it is, says so, and settles (never hangs, never crashes the process). */
  private stopOnError(err: unknown): void {
    this.state = 'short';
    this.reason = 'cancelled';
    this.detail = `the balloon stopped at ${this.stack.actualMib} MiB after an internal error: ${err instanceof Error ? err.message : String(err)}`;
    this.report(AgentError.from(err, 'internal'));
    const status = this.status;
    this.safeEmit('progress', status);
    this.safeEmit('shortfall', status);
  }

  /** Emits without letting a listener's exception stop the balloon. */
  private safeEmit<E extends keyof BalloonEngineEvents>(event: E, ...args: BalloonEngineEvents[E]): void {
    try {
      (this.emit as (event: E, ...args: BalloonEngineEvents[E]) => boolean)(event, ...args);
    } catch {
      // A listener's bug is the listener's: the balloon has already moved.
    }
  }

  private report(err: AgentError): void {
    this.safeEmit('problem', err);
  }

  /** A lower goal cancels the chunks in flight beyond it (latest target wins, at the next chunk). */
  private cancelIfOvershooting(): void {
    if (this.inflightEndMib > this.goalMib()) Atomics.add(this.control, 0, 1);
  }

  private goalMib(): number {
    return Math.min(this.targetMibValue, this.pressureCapMib);
  }

  private async run(): Promise<void> {
    let lastReportMib = this.stack.actualMib;
    let lastReportMs = performance.now();
    let stop: { reason: ShortfallReason; detail: string } | null = null;
    let freed = false;
    // A moving balloon has no shortfall (yet): the last one's reason is over.
    this.reason = 'none';
    this.detail = '';
    for (;;) {
      this.requestsSeen = this.requests;
      const goal = this.goalMib();
      const have = this.stack.actualMib;
      if (goal === have) break;
      if (goal > have) {
        this.state = 'inflating';
        const fresh = this.freshTarget;
        this.freshTarget = false;
        const result = await this.inflateStep(goal - have, fresh);
        if (result) {
          stop = result;
          // A newer target may have arrived while this step ran; only stop
          // if the goal still asks for more than we could give.
          if (this.goalMib() > this.stack.actualMib) break;
          stop = null;
        }
      } else {
        this.state = 'deflating';
        // Deflating is cheap (no faults): free several chunks between yields.
        this.gc.noteFreed(this.stack.popNewest(Math.min(have - goal, this.deflateStepMib)));
        freed = true;
        // Yield so that a new target (or a close) can be seen between steps.
        await new Promise<void>((r) => setImmediate(r));
      }
      const now = performance.now();
      const actualMib = this.stack.actualMib;
      if (Math.abs(actualMib - lastReportMib) >= this.progressEveryMib || now - lastReportMs >= this.progressEveryMs) {
        lastReportMib = actualMib;
        lastReportMs = now;
        this.emit('progress', this.status);
      }
    }
    if (stop) {
      this.state = 'short';
      this.reason = stop.reason;
      this.detail = stop.detail;
    } else if (this.pressureCapMib < this.targetMibValue && this.stack.actualMib < this.targetMibValue) {
      this.state = 'short';
      this.reason = 'guest_pressure';
      this.detail = `the guest fell below its floor of ${this.floor.floorMib} MiB; the agent deflated by itself`;
    } else {
      this.state = 'steady';
      this.reason = 'none';
      this.detail = '';
    }
    const status = this.status;
    this.emit('progress', status);
    if (status.state === 'short') this.emit('shortfall', status);
    if (freed) this.gc.afterDeflate(this.stack.actualMib);
    // The next target's first chunk, committed now that the balloon rests.
    this.stack.keepWarm(this.chunkMib);
  }

  private async inflateStep(missingMib: number, firstStep: boolean): Promise<{ reason: ShortfallReason; detail: string } | null> {
    this.laneBatchMib = firstStep ? WORKER_BATCH_MIB : Math.min(WORKER_BATCH_MAX_MIB, this.laneBatchMib * 2);
    const perLaneChunks = Math.max(1, Math.floor(this.laneBatchMib / this.chunkMib));
    const viaCalls = this.pool.usable;
    const stepMib = !viaCalls ? this.chunkMib : (firstStep ? this.chunkMib : 0) + this.pool.size * perLaneChunks * this.chunkMib;
    let wantMib = Math.min(missingMib, stepMib);
    const allowed = this.floor.allowsMib(wantMib);
    if (allowed < Math.min(wantMib, this.chunkMib)) {
      return { reason: 'guest_floor', detail: `inflating further would cross the guest's free-memory floor of ${this.floor.floorMib} MiB` };
    }
    wantMib = allowed;
    let allocError = '';
    let committedMib = 0;
    if (!viaCalls || firstStep) {
      // On a fresh target the main thread commits the first chunk itself,
      // before anything else (the reaction the host sees).
      const own = this.stack.allocate(Math.min(this.chunkMib, wantMib), this.chunkMib);
      allocError = own.error;
      if (own.chunks.length === 0) return { reason: 'out_of_memory', detail: allocError };
      this.commitHere(own.chunks[0]!);
      committedMib = own.chunks[0]!.sizeMib;
    }
    if (!viaCalls) {
      // Let a new target (or a close) in between chunks.
      await new Promise<void>((r) => setImmediate(r));
    } else if (wantMib > committedMib && !allocError) {
      // Async calls fault the rest in, so the main thread stays free to hear
      // the next target (which stops the issuing at the next chunk).
      const fresh = this.stack.allocate(wantMib - committedMib, this.chunkMib);
      allocError = fresh.error;
      if (fresh.chunks.length === 0 && committedMib === 0) return { reason: 'out_of_memory', detail: allocError };
      this.inflightEndMib = this.stack.actualMib + fresh.chunks.reduce((sum, c) => sum + c.sizeMib, 0);
      const lockWanted = this.lockState === 'unspecified' || this.lockState === 'locked';
      const marked = lockWanted ? this.markLockOnFault(fresh.chunks) : { callsLock: false, lockErrno: 0 };
      const result = await this.pool.dispatch(fresh.chunks, Atomics.load(this.control, 0), marked.callsLock, this.pageSizeBytes / 4);
      const refusedErrno = marked.lockErrno || result.lockErrno;
      let errnoSaid = false;
      for (const { chunk, locked } of result.committed) {
        const lockErrno: number = !locked && !errnoSaid ? refusedErrno : 0;
        errnoSaid ||= lockErrno !== 0;
        this.push(chunk, locked, lockErrno);
      }
      // Chunks not committed (a cancel, a failed call) were never counted; their memory is reused.
      for (const chunk of result.notCommitted) this.stack.recycle(chunk);
    }
    this.inflightEndMib = 0;
    this.floor.spend(wantMib);
    // Memory ran out part-way: keep what was committed and say so.
    return allocError ? { reason: 'out_of_memory', detail: allocError } : null;
  }

  /**
   * Marks a step's chunks locked on fault (mlock2 MLOCK_ONFAULT) before
   * the async calls fault them in with MADV_POPULATE_WRITE: mlock takes the
   * process's mmap lock for writing and then populates holding it for
   * reading, so two threads calling it take turns (perf: both slept in
   * rwsem_down_write_slowpath under do_mlock; 1.0 of 2 cores used);
   * populating a marked range takes the lock for reading only, which both
   * hold at once. Stops at the first refusal (the rest goes unpinned, and
   * the errno is said once); where mlock2 is missing each call mlocks.
   */
  private markLockOnFault(chunks: Chunk[]): { callsLock: boolean; lockErrno: number } {
    if (!this.lockOnFault) return { callsLock: true, lockErrno: 0 };
    for (const chunk of chunks) {
      const r = mlockOnFault(chunk.bytes);
      if (r.ok) {
        chunk.locked = true;
        continue;
      }
      if (r.failure !== 'unavailable') return { callsLock: false, lockErrno: r.errno };
      this.lockOnFault = false;
      return { callsLock: true, lockErrno: 0 };
    }
    return { callsLock: false, lockErrno: 0 };
  }

  /** Commits and pins a chunk on the main thread. */
  private commitHere(chunk: Chunk): void {
    let locked = false;
    let lockErrno = 0;
    if (this.lockState === 'unspecified' || this.lockState === 'locked') {
      // mlock first: it faults every page in, in the kernel, faster than
      // touching each from JS; the words written after make pages distinct.
      const r = mlock(chunk.bytes);
      if (r.ok) locked = true;
      else lockErrno = r.errno;
    }
    touchPages(chunk.sab, chunk.seed, this.pageSizeBytes / 4);
    this.push(chunk, locked, lockErrno);
  }

  /** Records a committed chunk (and what its lock attempt said). */
  private push(chunk: Chunk, locked: boolean, lockErrno: number): void {
    if (locked) {
      this.lockState = 'locked';
    } else if (lockErrno !== 0 && this.lockState !== 'not_permitted') {
      // Said once: from here on the balloon works unpinned.
      this.lockState = 'not_permitted';
      this.lockDetail = `balloon memory is not pinned: mlock failed with errno ${lockErrno} (needs root, CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)`;
    }
    this.stack.push(chunk, locked);
    this.emit('chunk', { actualMib: this.stack.actualMib, locked });
  }

  private checkPressure(): void {
    if (!this.deflateOnPressureValue) return;
    const cap = this.floor.pressureCapMib(this.stack.actualMib);
    if (cap !== null && cap < this.pressureCapMib) {
      this.pressureCapMib = cap;
      this.requests++;
      this.cancelIfOvershooting();
      this.kick();
    }
  }
}
