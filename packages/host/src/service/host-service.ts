// The host service: the VM registry, the pool and the running guests, joined.
// Every change of a balloon target goes through applyTarget (controlvm, the
// policy and admission alike), every change of state notifies subscribers.
// Operations that take memory from the pool's free quota (a start, a deflate)
// run one at a time under the quota lock, so that memory reclaimed for one of
// them is not taken by another while it waits.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { MAX_MEMORY_MIB, vmNameProblem, type BalloonStatus, type ErrorCode, type Hello, type MemoryStats, type Welcome } from '@memballoon/protocol';
import type { HostView, VmView } from '../api/views.js';
import { generateToken, hashToken, tokenMatches } from '../auth/tokens.js';
import { HostError } from '../errors.js';
import { HandOffDriver, type HandOffCgroup } from '../handoff/driver.js';
import { balloonTargetProblem, maxBalloonMib } from '../pool/balloon-rules.js';
import { Pool } from '../pool/pool.js';
import type { Registry, VmRecord, VmSettings } from '../registry/registry.js';
import { NO_COUNTERS, type ServiceCounters } from './observer.js';
import { statsView, vmView, type GuestFactsView } from './views.js';

/** How the service reaches a connected guest (the session implements it). */
export interface GuestLink {
  /** Sends SetBalloonTarget. */
  sendTarget(targetMib: number, generation: number): void;
  /** Sends HandOffBalloon (managed guests; absent on links that cannot). */
  sendHandOff?(handedOffMib: number): void;
  /** Ends the session from the host's side: Goodbye on shutdown, else an Error frame and a close. */
  end(reason: { kind: 'shutdown' } | { kind: 'error'; code: ErrorCode; message: string }): void;
  /** Whether the connection is still open. */
  readonly open: boolean;
}

/** The answer to a Hello: a Welcome, or a refusal that the session sends as Error + close. */
export type AdmissionResult =
  | { ok: true; sessionId: string; welcome: Omit<Welcome, 'statsIntervalMs' | 'heartbeatIntervalMs'> }
  | { ok: false; code: ErrorCode; message: string; retryAfterMs: number };

/** Host-wide facts for HostView that the service does not compute itself. */
export interface HostFacts {
  version: string;
  listen: () => string;
  dataDir: string;
  /** KSM's state for showhostinfo (page fusion). */
  ksm: () => { available: boolean; running: boolean; detail: string };
  /** Page fusion figures: MiB of a VM's hinted pages others hold too, and host-wide. */
  sharableMib?: { vm(name: string): number; host(): number };
}

/** Options of the service. */
export interface HostServiceOptions {
  registry: Registry;
  poolSizeMib: number;
  autoRegister: boolean;
  /** Check guest tokens in Hello (default true; off only for a loopback demo). */
  guestAuth?: boolean;
  logger: Logger;
  facts: HostFacts;
  /** How long a start or a deflate waits for other guests to inflate (default 20 s). */
  reclaimTimeoutMs?: number;
  /** Suggested wait before a refused guest retries (default 5 s). */
  retryAfterMs?: number;
  counters?: ServiceCounters;
  /** Wall clock in ms (tests may replace it). */
  nowMs?: () => number;
  /**
   * The memory cgroup of a managed guest (started by startvm or adopted), or
   * null. With it the host hands balloons off to the guests' limits, and a
   * managed guest's memory counts as reclaimed only once its limit holds it.
   */
  cgroupOf?: (name: string) => HandOffCgroup | null;
  /** Largest hand-off batch per round trip, in MiB (default 256). */
  handOffBatchMib?: number;
}

/** Settings the PATCH of modifyvm may carry. */
export type VmPatch = VmSettings;

/** Who asks for a balloon target. */
export type TargetSource = 'controlvm' | 'policy';

interface Running {
  sessionId: string;
  link: GuestLink;
  logger: Logger;
  guest: GuestFactsView;
}

const RESIZE_SETTINGS = ['memoryMib', 'defaultBalloonMib', 'pageFusion'] as const;

/** The host service: registry, pool, sessions, snapshot and change notification. */
export class HostService {
  private readonly registry: Registry;
  readonly pool: Pool;
  private readonly log: Logger;
  private readonly records = new Map<string, VmRecord>();
  private readonly running = new Map<string, Running>();
  private readonly admitting = new Set<string>();
  /** Newest generation sent per VM; survives sessions so that generations only increase. */
  private readonly generations = new Map<string, number>();
  private readonly listeners = new Set<() => void>();
  private readonly waiters = new Set<() => void>();
  private counters: ServiceCounters;
  private readonly nowMs: () => number;
  private readonly reclaimTimeoutMs: number;
  private readonly retryAfterMs: number;
  private readonly startedAtMs: number;
  private lockTail: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Hands managed guests' balloons off to their cgroup limits (null: no managed guests here). */
  private readonly handoff: HandOffDriver | null;

  constructor(private readonly options: HostServiceOptions) {
    this.registry = options.registry;
    this.pool = new Pool(options.poolSizeMib);
    this.log = options.logger;
    this.counters = options.counters ?? NO_COUNTERS;
    this.nowMs = options.nowMs ?? Date.now;
    this.reclaimTimeoutMs = options.reclaimTimeoutMs ?? 20_000;
    this.retryAfterMs = options.retryAfterMs ?? 5_000;
    this.startedAtMs = this.nowMs();
    for (const r of this.registry.list()) this.records.set(r.name, r);
    this.handoff = options.cgroupOf
      ? new HandOffDriver({ logger: this.log.child({ part: 'handoff' }), maxBatchMib: options.handOffBatchMib ?? 256, onChange: (name) => this.refreshReclaimed(name) })
      : null;
  }

  /** A managed guest's limit or hand-off moved: the pool counts what its limit holds now. */
  private refreshReclaimed(name: string): void {
    const held = this.handoff?.view(name);
    if (!held || !this.pool.has(name)) return;
    if (this.pool.get(name)?.actualMib === held.reclaimedMib) return;
    this.pool.reportActual(name, held.reclaimedMib);
    const r = this.running.get(name);
    if (r) r.guest.handedOffMib = held.handedOffMib;
    this.notify();
  }

  /** Resolves once no hand-off step is in flight (tests, benchmarks). */
  handOffsIdle(): Promise<void> {
    return this.handoff?.idle() ?? Promise.resolve();
  }

  /** Replaces the counters (the metrics module is mounted after the service exists). */
  setCounters(counters: ServiceCounters): void {
    this.counters = counters;
  }

  // ---- change notification -------------------------------------------------

  /** Calls `listener` after every change of state; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch (err) {
        this.log.error({ err }, 'a state listener threw');
      }
    }
    for (const w of [...this.waiters]) w();
  }

  /** Resolves true once `done()` holds, false at the deadline; re-checked on every change. */
  private waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (value: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      const check = () => {
        if (done()) finish(true);
      };
      const timer = setTimeout(() => finish(done()), timeoutMs);
      this.waiters.add(check);
    });
  }

  private withQuotaLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lockTail.then(fn, fn);
    this.lockTail = run.catch(() => undefined);
    return run;
  }

  // ---- views ---------------------------------------------------------------

  /** The whole state as the admin API, the dashboard and /metrics see it. */
  snapshot(): { host: HostView; vms: VmView[] } {
    return { host: this.hostView(), vms: this.listVms(false) };
  }

  /** HostView (showhostinfo). */
  hostView(): HostView {
    const vms = [...this.running.values()];
    return {
      pool: { sizeMib: this.pool.sizeMib, heldMib: this.pool.heldMib, reclaimedMib: this.pool.reclaimedMib, freeMib: this.pool.freeMib },
      version: this.options.facts.version,
      listen: this.options.facts.listen(),
      dataDir: this.options.facts.dataDir,
      vmsRegistered: this.records.size,
      vmsRunning: this.running.size,
      sharableMib: this.options.facts.sharableMib?.host() ?? 0,
      sharedMib: vms.reduce((s, r) => s + (r.guest.stats?.sharedMib ?? 0), 0),
      ksm: this.options.facts.ksm(),
      uptimeMs: this.nowMs() - this.startedAtMs,
      reclaim: this.handoff ? 'physical' : 'budget',
    };
  }

  /** Every registered VM (or only the running ones), oldest first. */
  listVms(runningOnly: boolean): VmView[] {
    const out: VmView[] = [];
    for (const name of this.records.keys()) {
      if (runningOnly && !this.running.has(name)) continue;
      out.push(this.vmView(name));
    }
    return out;
  }

  /** One VM's view; not_found if it is not registered. */
  vmView(name: string): VmView {
    const record = this.record(name);
    const r = this.running.get(name);
    const p = this.pool.get(name);
    const view = vmView(record, r && p ? { pool: p, guest: r.guest } : undefined);
    if (view.state === 'running' && this.options.facts.sharableMib) view.sharableMib = this.options.facts.sharableMib.vm(name);
    return view;
  }

  /** Whether a VM's guest is connected. */
  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  private record(name: string): VmRecord {
    const r = this.records.get(name);
    if (!r) throw new HostError('not_found', `Could not find a registered machine named '${name}'`);
    return r;
  }

  // ---- registry commands ---------------------------------------------------

  /**
   * createvm: registers a VM and issues its guest token, returned here once
   * and stored only as a hash.
   */
  createVm(input: { name: unknown; memoryMib: unknown }): VmView & { token: string } {
    const token = generateToken();
    return { ...this.register(input, hashToken(token)), token };
  }

  private register(input: { name: unknown; memoryMib: unknown }, tokenHash: string | null): VmView {
    const name = checkName(input.name);
    const memoryMib = checkMib(input.memoryMib, 'memoryMib', 1, MAX_MEMORY_MIB);
    const record = this.registry.create({ name, memoryMib, tokenHash }, this.nowMs());
    this.records.set(name, record);
    this.log.info({ vm: name, memoryMib, token: tokenHash !== null }, 'VM registered');
    this.notify();
    return this.vmView(name);
  }

  /** Whether a Hello's credential opens this VM: its token, or anything for a token-less auto-registered VM. */
  private credentialOk(record: VmRecord, credential: string): boolean {
    if (this.options.guestAuth === false) return true;
    return record.tokenHash === null || tokenMatches(credential, record.tokenHash);
  }

  /** unregistervm: removes a powered-off VM. */
  unregisterVm(name: string): void {
    this.record(name);
    if (this.running.has(name) || this.admitting.has(name)) {
      throw new HostError('vm_running', `VM '${name}' is running: unregistervm needs the VM powered off`);
    }
    this.registry.remove(name);
    this.records.delete(name);
    this.generations.delete(name);
    this.log.info({ vm: name }, 'VM unregistered');
    this.notify();
  }

  /** modifyvm: changes settings; resize settings only while the VM is off, policy settings any time. */
  modifyVm(name: string, patch: Record<string, unknown>): VmView {
    const record = this.record(name);
    const known = new Set<string>([...RESIZE_SETTINGS, 'balloonPolicy', 'memoryMinMib', 'balloonMaxMib', 'memoryWeight', 'memoryBufferPercent']);
    for (const key of Object.keys(patch)) {
      if (!known.has(key)) throw new HostError('invalid_argument', `modifyvm does not know the setting '${key}'`);
    }
    const running = this.running.has(name) || this.admitting.has(name);
    const resizing = RESIZE_SETTINGS.filter((k) => patch[k] !== undefined);
    if (running && resizing.length > 0) {
      throw new HostError('vm_running', `VM '${name}' is running: modifyvm needs the VM powered off (to change ${resizing.join(', ')})`);
    }
    const s: VmSettings = {};
    if (patch.memoryMib !== undefined) s.memoryMib = checkMib(patch.memoryMib, 'memoryMib', 1, MAX_MEMORY_MIB);
    const memoryMib = s.memoryMib ?? record.memoryMib;
    if (patch.defaultBalloonMib !== undefined) {
      s.defaultBalloonMib = checkMib(patch.defaultBalloonMib, 'defaultBalloonMib', 0, MAX_MEMORY_MIB);
    }
    const defaultBalloonMib = s.defaultBalloonMib ?? record.defaultBalloonMib;
    const problem = balloonTargetProblem(defaultBalloonMib, memoryMib, name);
    if (problem) throw new HostError('out_of_range', problem);
    if (patch.pageFusion !== undefined) {
      if (typeof patch.pageFusion !== 'boolean') throw new HostError('invalid_argument', 'pageFusion must be true or false');
      s.pageFusion = patch.pageFusion;
    }
    if (patch.balloonPolicy !== undefined) {
      if (patch.balloonPolicy !== 'manual' && patch.balloonPolicy !== 'auto') throw new HostError('invalid_argument', "balloonPolicy must be 'manual' or 'auto'");
      s.balloonPolicy = patch.balloonPolicy;
    }
    if (patch.memoryMinMib !== undefined) s.memoryMinMib = checkMib(patch.memoryMinMib, 'memoryMinMib', 0, memoryMib);
    if (patch.balloonMaxMib !== undefined) s.balloonMaxMib = checkMib(patch.balloonMaxMib, 'balloonMaxMib', 0, maxBalloonMib(memoryMib), 'below 90 % of the VM memory; 0: the 90 % rule alone');
    if (patch.memoryWeight !== undefined) s.memoryWeight = checkMib(patch.memoryWeight, 'memoryWeight', 1, 10_000, undefined, '');
    if (patch.memoryBufferPercent !== undefined) s.memoryBufferPercent = checkMib(patch.memoryBufferPercent, 'memoryBufferPercent', 0, 100, undefined, ' %');
    // A smaller memory must not leave the stored policy limits beyond it.
    const minMib = s.memoryMinMib ?? record.memoryMinMib;
    if (minMib > memoryMib) {
      throw new HostError('out_of_range', `memoryMinMib ${minMib} MiB of VM '${name}' is above its memory of ${memoryMib} MiB: lower it too (--memory-min)`);
    }
    const maxMib = s.balloonMaxMib ?? record.balloonMaxMib;
    if (maxMib > maxBalloonMib(memoryMib)) {
      throw new HostError('out_of_range', `balloonMaxMib ${maxMib} MiB of VM '${name}' is 90 % or more of its memory of ${memoryMib} MiB (the largest allowed is ${maxBalloonMib(memoryMib)} MiB): lower it too (--balloon-max, 0 for the 90 % rule alone)`);
    }
    const updated = this.registry.update(name, s);
    this.records.set(name, updated);
    if (this.pool.has(name)) this.pool.updateSettings(name, { memoryMinMib: updated.memoryMinMib, balloonMaxMib: updated.balloonMaxMib });
    this.log.info({ vm: name, settings: s }, 'VM modified');
    this.notify();
    return this.vmView(name);
  }

  // ---- balloon targets -----------------------------------------------------

  /**
   * controlvm NAME guestmemoryballoon MIB (and the policy): sets a running VM's
   * target. Latest wins. A deflate the free quota cannot fund reclaims from the
   * other VMs first (waiting for them), or fails with pool_exhausted and
   * changes nothing. `reclaim: false` (the policy): never reclaims, and waits
   * its turn behind a start or deflate in progress.
   */
  async setBalloon(name: string, targetMib: unknown, source: TargetSource = 'controlvm', opts: { reclaim?: boolean } = {}): Promise<VmView> {
    const record = this.record(name);
    const t = typeof targetMib === 'number' ? targetMib : Number.NaN;
    const problem = balloonTargetProblem(t, record.memoryMib, name);
    if (problem) {
      this.counters.countRefusal('balloon_too_large');
      throw new HostError('out_of_range', problem);
    }
    if (!this.running.has(name)) {
      this.counters.countRefusal('not_running');
      throw new HostError('not_running', `VM '${name}' is not running: controlvm needs a running VM (start its agent)`);
    }
    // The policy waits for a start or deflate in progress even when its
    // change costs nothing: lowering a target that a reclaim has just raised
    // would leave the reclaim waiting for memory that is never pinned.
    if (this.pool.targetCostMib(name, t) <= 0 && opts.reclaim !== false) {
      this.applyTarget(name, t, source);
      return this.vmView(name);
    }
    try {
      // Under the lock even without reclaim (the policy's deflates, funded
      // from the free quota): memory a waiting start or deflate has reclaimed
      // must not be spent by someone else meanwhile.
      await this.withQuotaLock(async () => {
        if (!this.running.has(name)) throw new HostError('not_running', `VM '${name}' stopped while its balloon was being changed`);
        const cost = this.pool.targetCostMib(name, t);
        if (cost > this.pool.freeMib && opts.reclaim === false) {
          throw new HostError('pool_exhausted', `deflating VM '${name}' to ${t} MiB needs ${cost} MiB but only ${this.pool.freeMib} MiB of the pool are free`);
        }
        if (cost > this.pool.freeMib) await this.fund(cost, [name], `deflating VM '${name}' to ${t} MiB`, () => this.running.has(name));
        this.applyTarget(name, t, source);
      });
    } catch (err) {
      const e = HostError.from(err);
      if (e.code === 'pool_exhausted') this.counters.countRefusal('pool_exhausted');
      throw e;
    }
    return this.vmView(name);
  }

  /** Sets a target in the pool and sends it with a new generation; the one path every target takes. */
  private applyTarget(name: string, targetMib: number, source: string): number {
    const r = this.running.get(name);
    if (!r) throw new HostError('not_running', `VM '${name}' is not running`);
    this.pool.setTarget(name, targetMib);
    const generation = (this.generations.get(name) ?? 0) + 1;
    this.generations.set(name, generation);
    r.guest.generation = generation;
    r.link.sendTarget(targetMib, generation);
    this.handoff?.onTarget(name, generation);
    r.logger.info({ targetMib, generation, source }, 'balloon target sent');
    this.notify();
    return generation;
  }

  /**
   * Makes `needMib` free: plans reclaim from the running VMs except `exclude`,
   * sends the new targets and waits until the guests have pinned enough. A
   * guest that stops short keeps what it pinned and drops out; the rest of
   * the deficit is planned again over the others, until the deadline. On
   * failure every target it raised is put back (nothing half-applied).
   */
  private async fund(needMib: number, exclude: string[], what: string, stillWanted: () => boolean): Promise<void> {
    if (this.pool.freeMib >= needMib) return;
    const deadlineMs = this.nowMs() + this.reclaimTimeoutMs;
    // First target of each VM this reclaim changed, and the newest generation it sent.
    const original = new Map<string, number>();
    const sent = new Map<string, number>();
    const dropped = new Set<string>(exclude);
    let failure: string | undefined;
    for (;;) {
      let plan;
      try {
        plan = this.pool.planReclaim(needMib, [...dropped]);
      } catch (err) {
        failure = (err as Error).message;
        break;
      }
      for (const [name, targetMib] of plan.targets) {
        if (!original.has(name)) original.set(name, this.pool.get(name)?.targetMib ?? 0);
        sent.set(name, this.applyTarget(name, targetMib, 'reclaim'));
      }
      this.log.info({ needMib, freeMib: this.pool.freeMib, targets: Object.fromEntries(plan.targets), what }, 'reclaiming memory from running VMs');
      const shortNow = () =>
        [...sent].filter(([name, generation]) => {
          if (dropped.has(name)) return false;
          const st = this.running.get(name)?.guest.status;
          return st !== undefined && st.generation === generation && st.state === 'short';
        });
      const leftMs = deadlineMs - this.nowMs();
      if (leftMs > 0) await this.waitUntil(() => this.pool.freeMib >= needMib || !stillWanted() || shortNow().length > 0, leftMs);
      if (this.pool.freeMib >= needMib && stillWanted()) return;
      if (!stillWanted()) break;
      const short = shortNow();
      if (short.length === 0) {
        failure = `the VMs ${[...sent.keys()].map((n) => `'${n}'`).join(', ')} did not inflate in time (${Math.round(this.reclaimTimeoutMs / 1000)} s)`;
        break;
      }
      // A guest that stopped short keeps what it pinned: its target comes
      // down to its actual (no cost: it holds the same) and it drops out.
      for (const [name] of short) {
        const p = this.pool.get(name);
        const reason = this.running.get(name)?.guest.status?.reason ?? 'unknown';
        this.log.info({ vm: name, actualMib: p?.actualMib, reason }, 'a VM stopped short of its reclaim target; planning over the others');
        if (p && p.actualMib < p.targetMib) sent.set(name, this.applyTarget(name, Math.max(p.actualMib, original.get(name) ?? 0), 'reclaim'));
        dropped.add(name);
        failure = `VM '${name}' stopped short of its new balloon (${reason})`;
      }
    }
    for (const [name, previousMib] of original) {
      const r = this.running.get(name);
      if (!r || r.guest.generation !== sent.get(name)) continue;
      try {
        this.applyTarget(name, previousMib, 'rollback');
      } catch (err) {
        this.log.warn({ vm: name, err: (err as Error).message }, 'could not put a reclaimed balloon back');
      }
    }
    if (!stillWanted()) throw new HostError('not_running', `${what}: given up, the VM went away`);
    throw new HostError('pool_exhausted', `${what}: ${needMib} MiB needed, ${this.pool.freeMib} MiB free: ${failure ?? 'nothing left to reclaim'}; the reclaim was undone`);
  }

  // ---- guest sessions ------------------------------------------------------

  /**
   * Handles a validated Hello: finds (or auto-registers) the VM, admits it into
   * the pool (reclaiming from others if needed, within a deadline) and returns
   * what to put in Welcome, or a refusal.
   */
  async openSession(hello: Hello, link: GuestLink, logger: Logger): Promise<AdmissionResult> {
    const name = hello.vmName;
    const refuse = (code: ErrorCode, message: string, retryAfterMs = 0): AdmissionResult => {
      this.counters.countRefusal(code);
      logger.warn({ code, retryAfterMs }, `guest refused: ${message}`);
      return { ok: false, code, message, retryAfterMs };
    };
    if (this.closed) return refuse('shutting_down', 'the host is shutting down', this.retryAfterMs);
    let record = this.records.get(name);
    if (!record) {
      if (!this.options.autoRegister) {
        return refuse('unknown_vm', `VM '${name}' is not registered on this host (register it with 'balloonctl createvm --name "${name}" --memory MIB', or start the host with --auto-register)`);
      }
      try {
        // Trust on first use: the first Hello's token (if any) becomes the
        // VM's; without one the VM stays token-less (the demo's mode).
        this.register({ name, memoryMib: hello.facts.totalMemoryMib }, hello.credential === '' ? null : hashToken(hello.credential));
        record = this.record(name);
        logger.info({ memoryMib: record.memoryMib }, 'VM auto-registered');
      } catch (err) {
        return refuse('internal', `VM '${name}' could not be registered: ${(err as Error).message}`);
      }
    }
    // Before anything else about the VM, so that a stranger learns nothing of its state.
    if (!this.credentialOk(record, hello.credential)) {
      return refuse('auth_failed', `the token for VM '${name}' is wrong or missing (give the agent the token createvm printed: --token or MEMBALLOON_TOKEN)`);
    }
    if (this.running.has(name) || this.admitting.has(name)) {
      return refuse('already_connected', `VM '${name}' already has a guest connected`, this.retryAfterMs);
    }
    if (hello.facts.totalMemoryMib !== record.memoryMib) {
      logger.warn({ guestMemoryMib: hello.facts.totalMemoryMib, memoryMib: record.memoryMib }, "the guest's memory differs from the VM's setting; the setting counts");
    }
    const memoryMib = record.memoryMib;
    // A guest that already applied targets (generation > 0) is resuming after
    // a dropped connection or a host restart: keep its target. A fresh start
    // gets the VM's default balloon.
    const resuming = hello.balloon.generation > 0;
    const targetMib = Math.min(resuming ? hello.balloon.targetMib : record.defaultBalloonMib, maxBalloonMib(memoryMib));
    const balloonActualMib = Math.min(hello.balloon.actualMib, memoryMib);
    this.admitting.add(name);
    // A managed guest's memory counts as reclaimed only where its limit holds
    // it: read back from the kernel (a restarted host finds what the last
    // one left), not taken from the guest's word.
    const cgroup = this.options.cgroupOf?.(name) ?? null;
    let actualMib = balloonActualMib;
    if (this.handoff && cgroup && link.sendHandOff) {
      const sendHandOff = link.sendHandOff.bind(link);
      try {
        actualMib = await this.handoff.attach(
          name,
          { cgroup, memoryMib, chunkMib: hello.facts.chunkSizeMib, sendHandOff },
          { handedOffMib: hello.balloon.handedOffMib ?? 0, generation: hello.balloon.generation },
        );
      } catch (err) {
        this.admitting.delete(name);
        return refuse('internal', `the memory cgroup of VM '${name}' could not be read: ${(err as Error).message}`, this.retryAfterMs);
      }
    }
    const needMib = Pool.admissionNeedMib(memoryMib, targetMib, actualMib);
    try {
      await this.withQuotaLock(async () => {
        if (!link.open) throw new HostError('not_running', 'the guest disconnected while waiting');
        if (this.closed) throw new HostError('internal', 'the host is shutting down');
        await this.fund(needMib, [name], `starting VM '${name}'`, () => link.open && !this.closed);
        this.pool.admit(name, { memoryMib, memoryMinMib: record.memoryMinMib, balloonMaxMib: record.balloonMaxMib, targetMib, actualMib });
      });
    } catch (err) {
      const e = HostError.from(err);
      this.handoff?.detach(name);
      if (e.code === 'pool_exhausted') return refuse('pool_exhausted', e.message, this.retryAfterMs);
      if (e.code === 'not_running') return { ok: false, code: 'timeout', message: e.message, retryAfterMs: 0 };
      return refuse('internal', e.message, this.retryAfterMs);
    } finally {
      this.admitting.delete(name);
    }
    const generation = Math.max(this.generations.get(name) ?? 0, hello.balloon.generation) + 1;
    this.generations.set(name, generation);
    const sessionId = randomUUID();
    this.running.set(name, {
      sessionId,
      link,
      logger,
      guest: {
        generation,
        pid: hello.facts.pid,
        lockedMib: Math.min(hello.balloon.lockedMib, balloonActualMib),
        ...(this.handoff?.has(name) ? { balloonActualMib, handedOffMib: hello.balloon.handedOffMib ?? 0 } : {}),
        startedAtMs: this.nowMs(),
        status: undefined,
        stats: undefined,
      },
    });
    this.counters.countSession(name);
    this.handoff?.onTarget(name, generation);
    logger.info({ sessionId, memoryMib, targetMib, generation, heldMib: needMib, pid: hello.facts.pid, resuming, managed: this.handoff?.has(name) ?? false }, 'guest admitted');
    this.notify();
    return {
      ok: true,
      sessionId,
      welcome: {
        sessionId,
        targetMib,
        generation,
        protection: { floorMib: 0, deflateOnPressure: true },
        pageFusion: record.pageFusion,
      },
    };
  }

  /** The guest's memory size as the host counts it (for decoding its frames), or undefined. */
  memoryOf(name: string): number | undefined {
    return this.records.get(name)?.memoryMib;
  }

  /** BalloonStatus from a guest: progress counts into the pool, clamped to what was asked. */
  onStatus(name: string, sessionId: string, status: BalloonStatus): void {
    const r = this.running.get(name);
    if (!r || r.sessionId !== sessionId) return;
    if (status.generation > r.guest.generation) {
      this.counters.countProtocolError('invalid_argument');
      r.logger.warn({ generation: status.generation, sent: r.guest.generation }, 'status for a generation never sent: ignored');
      return;
    }
    const before = this.pool.get(name);
    // A balloon only grows towards a target it was sent: it may sit above the
    // newest target while it deflates, never above both that and what it held.
    const ceilingMib = Math.max(before?.targetMib ?? 0, before?.actualMib ?? 0);
    let reportedMib = status.actualMib;
    if (reportedMib > ceilingMib) {
      this.counters.countProtocolError('out_of_range');
      r.logger.warn({ actualMib: reportedMib, ceilingMib, targetMib: before?.targetMib }, 'balloon actual above every target sent: clamped');
      reportedMib = ceilingMib;
    }
    const overcommitBeforeMib = this.pool.overcommitMib;
    const managed = this.handoff?.has(name) ?? false;
    r.guest.status = status;
    if (managed) {
      // The pool counts what the limit holds; the driver moves it (and calls refreshReclaimed).
      r.guest.balloonActualMib = reportedMib;
      r.guest.handedOffMib = Math.min(status.handedOffMib ?? 0, reportedMib);
      this.handoff!.onStatus(name, { ...status, actualMib: reportedMib });
    }
    const actualMib = this.pool.reportActual(name, managed ? (this.handoff!.view(name)?.reclaimedMib ?? 0) : reportedMib);
    r.guest.lockedMib = Math.min(status.lockedMib, managed ? reportedMib : actualMib);
    // Said when a guest's own deflate makes the overcommit grow, not on every
    // status frame while it lasts.
    if (this.pool.overcommitMib > overcommitBeforeMib) {
      r.logger.warn({ actualMib, previousActualMib: before?.actualMib, overcommitMib: this.pool.overcommitMib }, 'the guest deflated on its own: the pool is overcommitted');
    }
    if (status.state === 'short' && status.generation === r.guest.generation) {
      r.logger.warn({ targetMib: status.targetMib, actualMib, reason: status.reason, detail: status.detail }, 'balloon stopped short');
    }
    this.notify();
  }

  /** MemoryStats from a guest (advisory; clamped to the VM's memory). */
  onStats(name: string, sessionId: string, stats: MemoryStats): void {
    const r = this.running.get(name);
    if (!r || r.sessionId !== sessionId) return;
    r.guest.stats = statsView(stats, this.records.get(name)?.memoryMib ?? 0, this.nowMs());
    this.handoff?.onStats(name);
    this.notify();
  }

  /** A session ended (close, Goodbye, heartbeat loss): everything the VM held returns to the pool. */
  closeSession(name: string, sessionId: string, why: string): void {
    const r = this.running.get(name);
    if (!r || r.sessionId !== sessionId) return;
    const heldMib = this.pool.release(name);
    this.running.delete(name);
    // The limit stays: a reconnecting agent still has its handed-off part;
    // a VM that powers off gets its cgroup back from the launcher.
    this.handoff?.detach(name);
    r.logger.info({ heldMib, why }, 'guest disconnected: its memory returns to the pool');
    this.notify();
  }

  /** Ends every session with Goodbye(shutdown) and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const [name, r] of [...this.running]) {
      r.link.end({ kind: 'shutdown' });
      this.closeSession(name, r.sessionId, 'host shutdown');
    }
    for (const w of [...this.waiters]) w();
  }
}

function checkName(value: unknown): string {
  if (typeof value !== 'string') throw new HostError('invalid_argument', 'the VM name is missing');
  const problem = vmNameProblem(value);
  if (problem) throw new HostError('invalid_argument', problem);
  return value;
}

function checkMib(value: unknown, field: string, min: number, max: number, maxWhy?: string, unit = ' MiB'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new HostError('invalid_argument', `${field} must be a whole number (got ${JSON.stringify(value)})`);
  }
  if (value < min || value > max) {
    throw new HostError('out_of_range', `${field} ${value}${unit} is out of range (${min} to ${max}${unit}${maxWhy ? `, ${maxWhy}` : ''})`);
  }
  return value;
}
