// The balloon: memory taken from the guest in chunks, each committed page by
// page with distinct non-zero words (so neither the zero page nor KSM can
// quietly undo it) and pinned with mlock where permitted; deflated last-in
// first-out with the pages handed back to the kernel at once.
//
// One loop moves the balloon toward the newest target. It re-reads the
// target between steps of one chunk per thread, so a new target takes effect
// at the next chunk in either direction (latest wins).
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { BalloonState, BalloonStatus, LockState, ShortfallReason } from '@memballoon/protocol';
import { AgentError } from '../errors.js';
import { defaultFloorMib, type DomainSource } from '../domain/source.js';
import { MADV_DONTNEED, M_MMAP_THRESHOLD, madvise, mallopt, mlock, munlock, nativeAvailable, nativeUnavailableReason, pageSizeBytes } from '../native/libc.js';
import { fullGc } from './gc.js';

const MIB_BYTES = 1024 * 1024;

// ES2024's growable form of the constructor (Node 20 has it; our lib is ES2023).
const GrowableSharedArrayBuffer = SharedArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => SharedArrayBuffer;

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
  /** Worker threads that commit pages (default: one per core, at most 4; 0: all on the main thread). */
  workerThreads?: number;
  /** Progress is reported at least every this many MiB while moving (default 64). */
  progressEveryMib?: number;
  /** …and at least every this many ms while moving (default 100). */
  progressEveryMs?: number;
  /** Most MiB freed between two looks at the target while deflating (default 64). */
  deflateStepMib?: number;
  /** A worker job unanswered this long (plus 10 ms per MiB of the job) counts as a stuck worker (default 10 000). */
  workerJobTimeoutMs?: number;
  /** Tests: another worker script (same messages as touch-worker.mjs) and extra workerData for it. */
  workerScript?: { url: URL; data?: Record<string, unknown> };
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
  /** Something went wrong that the balloon worked around (a worker failed: code `worker_failed`). */
  problem: [err: AgentError];
}

interface Chunk {
  sab: SharedArrayBuffer;
  bytes: Uint8Array;
  sizeMib: number;
  seed: number;
  locked: boolean;
}

interface WorkerReply {
  id: number;
  /** Chunks committed, from the first (a cancelled job stops early). */
  done: number;
  /** Chunks pinned, from the first. */
  locked: number;
  /** errno of the first refused mlock (0: none). */
  lockErrno: number;
}

/** A job a worker owes us: its chunks (released if the worker fails) and its watchdog. */
interface PendingJob {
  chunks: Chunk[];
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

/** MiB each worker commits per message: large enough to amortise the message, small enough to report often. */
const WORKER_BATCH_MIB = 16;
/** Worker failures after which the engine stops restarting workers and commits on the main thread. */
const MAX_WORKER_FAILURES = 3;
/** How long close() lets workers finish (or cancel) their jobs before it gives up on them. */
const CLOSE_WORKER_GRACE_MS = 1000;
/** How long close() waits for a worker thread to terminate (one stuck in native code may never). */
const CLOSE_TERMINATE_WAIT_MS = 1000;
/** A reply that commits nothing: what a failed worker's jobs count as. */
const NOTHING_DONE: Omit<WorkerReply, 'id'> = { done: 0, locked: 0, lockErrno: 0 };

/**
 * A balloon of pinned SharedArrayBuffer chunks, usable alone (without a
 * host). Drive it with setTarget; read `status`; listen to its events.
 */
export class BalloonEngine extends EventEmitter<BalloonEngineEvents> {
  readonly chunkMib: number;
  readonly pageSizeBytes: number;
  private readonly chunks: Chunk[] = [];
  private readonly lockWanted: boolean;
  private readonly domain: DomainSource | null;
  private readonly maxTargetMib: number;
  private floorMibValue: number;
  private deflateOnPressureValue: boolean;
  private readonly progressEveryMib: number;
  private readonly progressEveryMs: number;
  private readonly workerCount: number;
  private readonly deflateStepMib: number;
  private readonly workerJobTimeoutMs: number;
  private readonly workerScript: { url: URL; data?: Record<string, unknown> };
  private workers: WorkerSlot[] = [];
  private workerSerial = 0;
  private workerFailures = 0;
  private nextJobId = 1;
  private nextSeed = 1;

  private targetMibValue = 0;
  private generationValue = 0;
  /** Upper bound set by guest pressure; lifted by the next target. */
  private pressureCapMib = Number.POSITIVE_INFINITY;
  /** pinned (the chunks) + handed off. */
  private actualMibValue = 0;
  private lockedMibValue = 0;
  /** Part of the balloon whose pages were released because the host's limit took it over (no chunk holds it). */
  private handedOffMibValue = 0;
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
  private closed = false;
  private settleWaiters: Array<(s: BalloonStatus) => void> = [];
  private pressureTimer: NodeJS.Timeout | null = null;
  private gcTimer: NodeJS.Timeout | null = null;
  private floorBudgetMib = 0;
  /** Shared with the workers: [epoch]; bumping it cancels their jobs at the next chunk. */
  private readonly control = new Int32Array(new SharedArrayBuffer(4));
  /** Where the balloon ends if the step in flight completes (0: none in flight). */
  private inflightEndMib = 0;
  private freedSinceGcMib = 0;
  /** A target arrived since the last inflate step: commit its first chunk on the main thread, at once. */
  private freshTarget = false;

  constructor(options: BalloonEngineOptions = {}) {
    super();
    this.chunkMib = options.chunkMib ?? 1;
    if (!Number.isInteger(this.chunkMib) || this.chunkMib < 1 || this.chunkMib > 1024) {
      throw new AgentError('invalid_config', `chunk size must be a whole number of MiB from 1 to 1024, not ${options.chunkMib}`);
    }
    this.pageSizeBytes = pageSizeBytes();
    this.domain = options.domain ?? null;
    this.maxTargetMib = options.maxTargetMib ?? this.domain?.totalMib ?? Number.MAX_SAFE_INTEGER;
    this.floorMibValue = options.floorMib || (this.domain ? defaultFloorMib(this.domain.totalMib) : 0);
    this.deflateOnPressureValue = options.deflateOnPressure ?? true;
    this.progressEveryMib = options.progressEveryMib ?? 64;
    this.progressEveryMs = options.progressEveryMs ?? 100;
    this.deflateStepMib = Math.max(this.chunkMib, options.deflateStepMib ?? 64);
    this.workerJobTimeoutMs = options.workerJobTimeoutMs ?? 10_000;
    this.workerScript = options.workerScript ?? { url: new URL('./touch-worker.mjs', import.meta.url) };
    // One worker per core: the main thread mostly waits (and hears targets).
    this.workerCount = Math.max(0, options.workerThreads ?? Math.min(4, availableParallelism()));
    this.lockWanted = options.lock ?? true;
    this.lockState = this.lockWanted ? (nativeAvailable() ? 'unspecified' : 'unsupported') : 'disabled';
    if (this.lockState === 'unsupported') this.lockDetail = nativeUnavailableReason();
    if (this.lockState === 'unspecified') this.probeLock();
    if (nativeAvailable()) {
      // After its first free, glibc raises its mmap threshold (up to 32 MiB),
      // and later SAB stores would come from the brk heap and might never
      // return to the kernel. Growable SABs (below) avoid glibc anyway; this
      // keeps every other large allocation of the process returnable too.
      mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
    if (this.domain) {
      const interval = options.pressureCheckIntervalMs ?? 250;
      this.pressureTimer = setInterval(() => this.checkPressure(), interval);
      this.pressureTimer.unref();
    }
  }

  /** Tries mlock on one page, so that Hello and the first status tell the truth about pinning. */
  private probeLock(): void {
    const page = new Uint8Array(new GrowableSharedArrayBuffer(this.pageSizeBytes, { maxByteLength: this.pageSizeBytes }));
    const r = mlock(page);
    if (r.ok) {
      munlock(page);
      this.lockState = 'locked';
    } else {
      this.lockState = r.failure === 'unavailable' ? 'unsupported' : 'not_permitted';
      this.lockDetail = `balloon memory is not pinned: ${r.message} (needs root, CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)`;
    }
  }

  /** The balloon right now (a copy). */
  get status(): BalloonStatus {
    return {
      generation: this.generationValue,
      targetMib: this.targetMibValue,
      actualMib: this.actualMibValue,
      lockedMib: this.lockedMibValue,
      // Absent rather than 0, as the wire decodes it.
      ...(this.handedOffMibValue > 0 ? { handedOffMib: this.handedOffMibValue } : {}),
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
    return this.floorMibValue;
  }

  /** Changes the guest protection (from the host's Welcome); floorMib 0 keeps the default. */
  setProtection(protection: { floorMib: number; deflateOnPressure: boolean }): void {
    this.floorMibValue = protection.floorMib || (this.domain ? defaultFloorMib(this.domain.totalMib) : 0);
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
    this.floorBudgetMib = 0;
    this.freshTarget = true;
    this.requests++;
    this.emit('target', { targetMib, generation: gen });
    this.cancelIfOvershooting();
    this.kick();
    return true;
  }

  /** MiB of the balloon handed off to the host's limit (pages released, still counted in actualMib). */
  get handedOffMib(): number {
    return this.handedOffMibValue;
  }

  /**
   * The host has lowered this guest's memory limit by what it takes over:
   * releases the newest chunks (munlock, then MADV_DONTNEED so the pages
   * leave the guest's cgroup at once) until handedOffMib of the balloon are
   * handed off. Absolute and idempotent: a value at or below what is handed
   * off already changes nothing, and only whole chunks held now are released
   * (never chunks a worker is still committing), so the result may fall
   * short of the request; the status says what was done. actualMib does not
   * change. Synchronous: a GiB of pages is released in tens of ms.
   */
  handOff(handedOffMib: number): BalloonStatus {
    if (this.closeRequested) throw new AgentError('closed', 'the balloon is closed');
    if (!Number.isSafeInteger(handedOffMib) || handedOffMib < 0) {
      throw new AgentError('target_out_of_range', `a hand-off must be a whole number of MiB, not ${handedOffMib}`);
    }
    let releasedMib = 0;
    while (this.handedOffMibValue < handedOffMib) {
      const chunk = this.chunks.at(-1);
      // A chunk larger than what is left would free more than the host's
      // limit took over: stop short instead (the host reads the status).
      if (!chunk || this.handedOffMibValue + chunk.sizeMib > handedOffMib) break;
      this.chunks.pop();
      if (chunk.locked) {
        munlock(chunk.bytes);
        this.lockedMibValue -= chunk.sizeMib;
      }
      madvise(chunk.bytes, MADV_DONTNEED);
      this.handedOffMibValue += chunk.sizeMib;
      releasedMib += chunk.sizeMib;
    }
    if (releasedMib > 0) {
      this.freedSinceGcMib += releasedMib;
      // The pages are gone already; a GC only unmaps the spent buffers.
      this.scheduleCollect();
      this.floorBudgetMib = 0;
    }
    return this.status;
  }

  /**
   * What the floor and pressure checks count as available, in bytes: the
   * domain's reading, as if the limit were the one the balloon's own
   * bookkeeping implies (the domain's memory minus what is handed off). A
   * process or machine domain does not see the host's limit at all, and a
   * cgroup's limit lags the agent by a round trip after a deflate of
   * handed-off MiB: without this, the first would overestimate what the
   * guest has and the second would deflate again and again until the host
   * caught up.
   */
  private availableBytes(): number {
    const a = this.domain!.availability();
    const limitLoweredBytes = Math.max(0, this.domain!.totalMib * MIB_BYTES - a.totalBytes);
    return Math.max(0, a.availableBytes + limitLoweredBytes - this.handedOffMibValue * MIB_BYTES);
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
    const pageWords = this.pageSizeBytes / 4;
    let pages = 0;
    for (const [index, chunk] of this.chunks.entries()) {
      const words = new Uint32Array(chunk.sab);
      let expected = chunk.seed;
      for (let i = 0; i < words.length; i += pageWords, expected++, pages++) {
        if (words[i] === 0 || words[i] !== expected) {
          throw new AgentError('internal', `chunk ${index} page ${i / pageWords} holds ${words[i]}, expected ${expected}`);
        }
      }
    }
    return pages;
  }

  /**
   * Deflates everything, stops the workers and timers. The engine cannot be
   * used after. Always finishes: workers that do not answer within a grace
   * period are given up (and the deflate runs on the main thread), and
   * threads that will not terminate are not waited for beyond a bound.
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
      // A worker that ignores the cancel is stuck: its jobs count as not
      // done, so the loop goes on (deflating needs no worker).
      for (const slot of [...this.workers]) {
        if (slot.pending.size > 0) this.failWorker(slot, `did not answer within ${CLOSE_WORKER_GRACE_MS} ms of close`);
      }
    }
    this.closed = true;
    if (this.gcTimer) clearTimeout(this.gcTimer);
    this.collect();
    const workers = this.workers;
    this.workers = [];
    await Promise.all(workers.map((w) => withTimeout(w.worker.terminate().catch(() => undefined), CLOSE_TERMINATE_WAIT_MS)));
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
        if (this.requests !== this.requestsSeen && this.goalMib() !== this.actualMibValue) {
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
    this.detail = `the balloon stopped at ${this.actualMibValue} MiB after an internal error: ${err instanceof Error ? err.message : String(err)}`;
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
    let lastReportMib = this.actualMibValue;
    let lastReportMs = performance.now();
    let stop: { reason: ShortfallReason; detail: string } | null = null;
    let freed = false;
    // A moving balloon has no shortfall (yet): the last one's reason is over.
    this.reason = 'none';
    this.detail = '';
    for (;;) {
      this.requestsSeen = this.requests;
      const goal = this.goalMib();
      const have = this.actualMibValue;
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
          if (this.goalMib() > this.actualMibValue) break;
          stop = null;
        }
      } else {
        this.state = 'deflating';
        this.deflateStep(have - goal);
        freed = true;
        // Yield so that a new target (or a close) can be seen between steps.
        await new Promise<void>((r) => setImmediate(r));
      }
      const now = performance.now();
      if (Math.abs(this.actualMibValue - lastReportMib) >= this.progressEveryMib || now - lastReportMs >= this.progressEveryMs) {
        lastReportMib = this.actualMibValue;
        lastReportMs = now;
        this.emit('progress', this.status);
      }
    }
    if (stop) {
      this.state = 'short';
      this.reason = stop.reason;
      this.detail = stop.detail;
    } else if (this.pressureCapMib < this.targetMibValue && this.actualMibValue < this.targetMibValue) {
      this.state = 'short';
      this.reason = 'guest_pressure';
      this.detail = `the guest fell below its floor of ${this.floorMibValue} MiB; the agent deflated by itself`;
    } else {
      this.state = 'steady';
      this.reason = 'none';
      this.detail = '';
    }
    const status = this.status;
    this.emit('progress', status);
    if (status.state === 'short') this.emit('shortfall', status);
    if (freed) this.maybeCollect();
  }

  /** How many MiB the floor lets us take now (re-reading the domain when the last budget is used up). */
  private floorAllowsMib(wantMib: number): number {
    if (!this.domain || this.floorMibValue <= 0) return wantMib;
    if (this.floorBudgetMib < wantMib) {
      // Our own inflation lowers availability MiB for MiB, so one reading
      // stays good until its budget is spent: no /proc read per chunk.
      this.floorBudgetMib = Math.max(0, Math.floor(this.availableBytes() / MIB_BYTES) - this.floorMibValue);
    }
    return Math.min(wantMib, this.floorBudgetMib);
  }

  /** Whether workers commit pages (none asked for, or too many failed: the main thread does). */
  private get useWorkers(): boolean {
    return this.workerCount > 0 && this.workerFailures < MAX_WORKER_FAILURES;
  }

  private async inflateStep(missingMib: number, firstStep: boolean): Promise<{ reason: ShortfallReason; detail: string } | null> {
    const perWorkerChunks = Math.max(1, Math.floor(WORKER_BATCH_MIB / this.chunkMib));
    const viaWorkers = this.useWorkers;
    const stepMib = !viaWorkers ? this.chunkMib : (firstStep ? this.chunkMib : 0) + this.workerCount * perWorkerChunks * this.chunkMib;
    let wantMib = Math.min(missingMib, stepMib);
    const allowed = this.floorAllowsMib(wantMib);
    if (allowed < Math.min(wantMib, this.chunkMib)) {
      return { reason: 'guest_floor', detail: `inflating further would cross the guest's free-memory floor of ${this.floorMibValue} MiB` };
    }
    wantMib = allowed;
    let allocError = '';
    const allocate = (mib: number, out: Chunk[]): void => {
      for (let left = mib; left > 0; ) {
        const sizeMib = Math.min(this.chunkMib, left);
        const bytes = sizeMib * MIB_BYTES;
        let sab: SharedArrayBuffer;
        try {
          // Growable SABs are mapped by V8 itself, page-aligned and outside
          // glibc's heap, so madvise can return their pages and munmap frees them.
          sab = new GrowableSharedArrayBuffer(bytes, { maxByteLength: bytes });
        } catch (err) {
          allocError = `could not allocate ${sizeMib} MiB: ${err instanceof Error ? err.message : String(err)}`;
          return;
        }
        out.push({ sab, bytes: new Uint8Array(sab), sizeMib, seed: this.nextSeed, locked: false });
        this.nextSeed += bytes / this.pageSizeBytes;
        left -= sizeMib;
      }
    };
    let committedMib = 0;
    if (!viaWorkers || firstStep) {
      // On a fresh target the main thread commits the first chunk itself,
      // before anything else (the reaction the host sees).
      const own: Chunk[] = [];
      allocate(Math.min(this.chunkMib, wantMib), own);
      if (own.length === 0) return { reason: 'out_of_memory', detail: allocError };
      this.commitHere(own[0]!);
      committedMib = own[0]!.sizeMib;
    }
    if (!viaWorkers) {
      // Let a new target (or a close) in between chunks.
      await new Promise<void>((r) => setImmediate(r));
    } else if (wantMib > committedMib && !allocError) {
      // The workers take the rest, so the main thread stays free to hear
      // the next target (which cancels their jobs at the next chunk).
      const fresh: Chunk[] = [];
      allocate(wantMib - committedMib, fresh);
      if (fresh.length === 0 && committedMib === 0) return { reason: 'out_of_memory', detail: allocError };
      this.inflightEndMib = this.actualMibValue + fresh.reduce((sum, c) => sum + c.sizeMib, 0);
      await this.dispatch(fresh, Atomics.load(this.control, 0));
    }
    this.inflightEndMib = 0;
    this.floorBudgetMib -= wantMib;
    // Memory ran out part-way: keep what was committed and say so.
    return allocError ? { reason: 'out_of_memory', detail: allocError } : null;
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
    touchPages(chunk, this.pageSizeBytes / 4);
    this.push(chunk, locked, lockErrno);
  }

  /** Records a committed chunk (and what its lock attempt said). */
  private push(chunk: Chunk, locked: boolean, lockErrno: number): void {
    if (locked) {
      chunk.locked = true;
      this.lockState = 'locked';
      this.lockedMibValue += chunk.sizeMib;
    } else if (lockErrno !== 0 && this.lockState !== 'not_permitted') {
      // Said once: from here on the balloon works unpinned.
      this.lockState = 'not_permitted';
      this.lockDetail = `balloon memory is not pinned: mlock failed with errno ${lockErrno} (needs root, CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)`;
    }
    this.chunks.push(chunk);
    this.actualMibValue += chunk.sizeMib;
    this.emit('chunk', { actualMib: this.actualMibValue, locked: chunk.locked });
  }

  /**
   * Hands chunks to the workers, a contiguous share each; resolves when all
   * have answered or failed. Chunks of a failed worker's job are released
   * and not counted: the loop commits them again (on a restarted worker, or
   * on the main thread once workers have failed too often).
   */
  private dispatch(chunks: Chunk[], epoch: number): Promise<void> {
    if (chunks.length === 0) return Promise.resolve();
    this.startWorkers();
    const slots = this.workers;
    if (slots.length === 0) return Promise.resolve();
    const lock = this.lockState === 'unspecified' || this.lockState === 'locked';
    const per = Math.ceil(chunks.length / slots.length);
    const pageWords = this.pageSizeBytes / 4;
    const shares = slots.map((slot, i) => ({ slot, list: chunks.slice(i * per, (i + 1) * per) })).filter((s) => s.list.length > 0);
    return Promise.all(
      shares.map(
        ({ slot, list }) =>
          new Promise<WorkerReply>((resolve) => {
            const id = this.nextJobId++;
            const jobMib = list.reduce((sum, c) => sum + c.sizeMib, 0);
            const timeoutMs = this.workerJobTimeoutMs + jobMib * 10;
            // A worker that neither answers nor dies (stuck in native code, a
            // message it could not read) would hold the balloon forever.
            const watchdog = setTimeout(() => this.failWorker(slot, `did not answer a job of ${jobMib} MiB within ${timeoutMs} ms`), timeoutMs);
            slot.pending.set(id, { chunks: list, resolve, watchdog });
            // Keep the process alive while a worker owes us chunks.
            slot.worker.ref();
            try {
              slot.worker.postMessage({ id, epoch, pageWords, lock, jobs: list.map((c) => ({ sab: c.sab, seed: c.seed })) });
            } catch (err) {
              this.failWorker(slot, 'could not be sent a job', err);
            }
          }),
      ),
    ).then((replies) => {
      replies.forEach((reply, i) => {
        const list = shares[i]!.list;
        for (let k = 0; k < reply.done; k++) this.push(list[k]!, k < reply.locked, k === reply.locked ? reply.lockErrno : 0);
        // Chunks past `done` (a cancel) were never committed; they are garbage now.
      });
    });
  }

  /** Fills the pool up to workerCount (a failed worker's place is taken by a new one). */
  private startWorkers(): void {
    while (this.useWorkers && this.workers.length < this.workerCount) {
      const serial = ++this.workerSerial;
      let worker: Worker;
      try {
        worker = new Worker(this.workerScript.url, { workerData: { ...this.workerScript.data, control: this.control } });
      } catch (err) {
        this.noteWorkerFailure(serial, 'could not be started', err);
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
      worker.on('error', (err) => this.failWorker(slot, 'failed', err));
      worker.on('messageerror', (err) => this.failWorker(slot, 'sent a reply that could not be read', err));
      worker.on('exit', (code) => {
        if (!this.closed) this.failWorker(slot, `exited with code ${code}`);
      });
      // Idle workers must not keep the process alive.
      worker.unref();
      this.workers.push(slot);
    }
  }

  /**
   * Takes a failed worker out of the pool: its jobs count as not done and
   * their chunks are released (it may have pinned and touched some before
   * it failed), and the failure is reported. Idempotent.
   */
  private failWorker(slot: WorkerSlot, what: string, cause?: unknown): void {
    if (slot.dead) return;
    slot.dead = true;
    this.workers = this.workers.filter((w) => w !== slot);
    let lostMib = 0;
    for (const job of slot.pending.values()) {
      clearTimeout(job.watchdog);
      for (const chunk of job.chunks) {
        release(chunk);
        lostMib += chunk.sizeMib;
      }
      this.freedSinceGcMib += job.chunks.reduce((sum, c) => sum + c.sizeMib, 0);
    }
    const jobs = [...slot.pending.entries()];
    slot.pending.clear();
    // Not awaited: a thread stuck in native code may never finish terminating.
    slot.worker.terminate().catch(() => undefined);
    slot.worker.unref();
    this.noteWorkerFailure(slot.serial, lostMib > 0 ? `${what} (${lostMib} MiB of its job to be committed again)` : what, cause);
    for (const [id, job] of jobs) job.resolve({ id, ...NOTHING_DONE });
  }

  private noteWorkerFailure(serial: number, what: string, cause?: unknown): void {
    this.workerFailures++;
    const next = this.closeRequested ? 'the balloon is closing' : this.useWorkers ? 'a new worker takes its place' : `${this.workerFailures} worker failures: committing on the main thread from now on`;
    const why = cause === undefined ? '' : `: ${cause instanceof Error ? cause.message : String(cause)}`;
    this.report(new AgentError('worker_failed', `balloon worker ${serial} ${what}${why}; ${next}`, cause === undefined ? undefined : { cause }));
  }

  private deflateStep(excessMib: number): void {
    // Handed-off MiB go first and need no page work: their pages are gone
    // already, and the host gives them back by raising the guest's limit.
    const handedBackMib = Math.min(excessMib, this.handedOffMibValue);
    this.handedOffMibValue -= handedBackMib;
    this.actualMibValue -= handedBackMib;
    excessMib -= handedBackMib;
    // Deflating is cheap (no faults): free several chunks between yields.
    let budgetMib = Math.min(excessMib, this.deflateStepMib);
    while (budgetMib > 0) {
      const chunk = this.chunks.at(-1);
      if (!chunk) break;
      // A target inside the last chunk frees it whole; the loop then
      // refills the rest with a smaller chunk.
      this.chunks.pop();
      if (chunk.locked) {
        munlock(chunk.bytes);
        this.lockedMibValue -= chunk.sizeMib;
      }
      // Hand the pages back now (VmRSS drops at once) instead of waiting for
      // a GC to unmap them; madvise refuses locked pages, hence munlock first.
      madvise(chunk.bytes, MADV_DONTNEED);
      this.actualMibValue -= chunk.sizeMib;
      this.freedSinceGcMib += chunk.sizeMib;
      budgetMib -= chunk.sizeMib;
      excessMib -= chunk.sizeMib;
    }
  }

  /**
   * madvise has handed the pages back already; a GC only unmaps the spent
   * chunks and settles V8's external-memory account. A full GC costs
   * milliseconds, so it runs after a deflate to empty or after 256 MiB freed;
   * without madvise it is what frees the pages, so it always runs.
   */
  private maybeCollect(): void {
    if (!nativeAvailable() || this.actualMibValue === 0 || this.freedSinceGcMib >= 256) this.scheduleCollect();
  }

  private scheduleCollect(): void {
    if (this.gcTimer) return;
    // Collect soon after a deflate, not inside it: a full GC costs tens of
    // ms that a target arriving right after should not wait for.
    this.gcTimer = setTimeout(() => {
      this.gcTimer = null;
      if (!this.running) this.collect();
      else this.scheduleCollect();
    }, 20);
    this.gcTimer.unref();
  }

  private collect(): void {
    this.freedSinceGcMib = 0;
    fullGc()?.();
    for (const w of this.workers) w.worker.postMessage({ gc: true });
  }

  private checkPressure(): void {
    if (!this.domain || !this.deflateOnPressureValue || this.floorMibValue <= 0 || this.actualMibValue === 0) return;
    const availableMib = Math.floor(this.availableBytes() / MIB_BYTES);
    if (availableMib >= this.floorMibValue) return;
    const needMib = this.floorMibValue - availableMib;
    const cap = Math.max(0, this.actualMibValue - needMib);
    if (cap < this.pressureCapMib) {
      this.pressureCapMib = cap;
      this.requests++;
      this.cancelIfOvershooting();
      this.kick();
    }
  }
}

/** Hands a chunk's pages back to the kernel whatever state a failed worker left them in (munlock first: madvise refuses locked pages). */
function release(chunk: Chunk): void {
  munlock(chunk.bytes);
  madvise(chunk.bytes, MADV_DONTNEED);
}

/** The promise's value, or 'timeout' after timeoutMs. */
async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T | 'timeout'> {
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

/** Writes one distinct non-zero word per page: commits the page and defeats zero-page and KSM merging. */
function touchPages(chunk: Chunk, pageWords: number): void {
  const words = new Uint32Array(chunk.sab);
  let value = chunk.seed;
  for (let i = 0; i < words.length; i += pageWords) words[i] = value++;
}
