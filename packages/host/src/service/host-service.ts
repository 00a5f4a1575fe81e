// The host service: the VM registry, the pool and the running guests, joined.
// Every change of a balloon target goes through applyTarget (controlvm, the
// policy, admission and the reclaim alike), every change of state notifies
// subscribers. Taking memory from the pool (a start, a deflate) goes through
// the reclaim (./reclaim.ts) under its quota lock; settings are parsed by
// ./vm-settings.ts.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { nextGeneration, type BalloonStatus, type ErrorCode, type Hello, type MemoryStats, type Welcome } from '@memballoon/protocol';
import type { HostView, VmView } from './views.js';
import { generateToken, hashToken, tokenMatches } from '../auth/tokens.js';
import { HostError } from '../errors.js';
import { HandOffDriver, type HandOffCgroup } from '../handoff/driver.js';
import { balloonLimitMib, balloonTargetProblem, guestFloorMib } from '../pool/balloon-rules.js';
import { Pool } from '../pool/pool.js';
import type { Registry, VmRecord } from '../registry/registry.js';
import { NO_COUNTERS, type ServiceCounters } from './observer.js';
import { balloonActualMibOf, vmView, writeStatsView, writeStatus, type GuestFactsView } from './build-views.js';
import { Reclaimer, SYSTEM_CLOCK, type Clock, type ReclaimSource } from './reclaim.js';
import { parseCreateVm, parseVmPatch, type CreateVmInput, type VmPatch } from './vm-settings.js';
import type { GuestsCollaborator } from '../guests/views.js';

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
  /** Wall clock and timers (tests pass a fake one). */
  clock?: Clock;
  /** The guests the host owns (startvm, adopted cgroups): their cgroups, launch tokens and views. */
  guests?: GuestsCollaborator;
  /**
   * The memory cgroup of a managed guest, or null; default: the launcher's
   * (`guests.cgroupOf`). With one, the host hands the guest's balloon off to
   * its limit, and the guest's memory counts as reclaimed only once its
   * limit holds it.
   */
  cgroupOf?: (name: string) => HandOffCgroup | null;
  /** Largest hand-off batch per round trip, in MiB (default 256). */
  handOffBatchMib?: number;
  /** Hand off while a balloon still inflates (default true); false waits for the settle (the benchmark's reference). */
  handOffWhileInflating?: boolean;
}

/** Who asks for a balloon target. */
export type TargetSource = 'controlvm' | 'policy';

/** Receives one running VM's charted figures (see HostService.forEachBalloonSample); availableMib is undefined before its first statistics. */
export type BalloonSampleVisitor = (name: string, startedAtMs: number, targetMib: number, actualMib: number, availableMib: number | undefined) => void;

/** Every source of a target, as its log line names it. */
type AnySource = TargetSource | ReclaimSource | 'admission';

interface Running {
  sessionId: string;
  link: GuestLink;
  logger: Logger;
  guest: GuestFactsView;
  /** The floor sent in Welcome: available memory the guest keeps (see guestFloorMib). */
  floorMib: number;
  /** The memory the guest reported in Hello: it refuses targets above it, whatever the VM's setting. */
  guestMemoryMib: number;
  /** The generation each kind of balloon event was last logged for: each is logged once per target, not per status frame. */
  logged: Map<string, number>;
}

// Compared against when a Hello names an unknown VM, so that it costs what a wrong token costs.
const UNKNOWN_VM_TOKEN_HASH = hashToken('no VM has this token');

/** The host service: registry, pool, sessions, snapshot and change notification. */
export class HostService {
  private readonly registry: Registry;
  readonly pool: Pool;
  private readonly log: Logger;
  private readonly records = new Map<string, VmRecord>();
  private readonly running = new Map<string, Running>();
  private readonly admitting = new Set<string>();
  /** The newest pool refusal of each registered VM's Hello (startvm fails with it at once); cleared at admission. */
  private readonly poolRefusals = new Map<string, { message: string }>();
  /** Targets set while a VM was starting (controlvm before its guest is admitted): applied once it is, latest wins. */
  private readonly pendingTargets = new Map<string, number>();
  /** Newest generation sent per VM; survives sessions so that generations only increase. */
  private readonly generations = new Map<string, number>();
  private readonly listeners = new Set<() => void>();
  private readonly reclaim: Reclaimer;
  private counters: ServiceCounters;
  private readonly clock: Clock;
  private readonly retryAfterMs: number;
  private readonly startedAtMs: number;
  private closed = false;
  /** Hands managed guests' balloons off to their cgroup limits (null: no managed guests here). */
  private readonly handoff: HandOffDriver | null;
  private readonly cgroupOf: ((name: string) => HandOffCgroup | null) | null;

  constructor(private readonly options: HostServiceOptions) {
    this.registry = options.registry;
    this.pool = new Pool(options.poolSizeMib);
    this.log = options.logger;
    this.counters = options.counters ?? NO_COUNTERS;
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.retryAfterMs = options.retryAfterMs ?? 5_000;
    this.startedAtMs = this.clock.nowMs();
    this.reclaim = new Reclaimer(
      {
        pool: this.pool,
        applyTarget: (name, targetMib, source) => this.applyTarget(name, targetMib, source),
        guest: (name) => this.running.get(name)?.guest,
      },
      { timeoutMs: options.reclaimTimeoutMs ?? 20_000, clock: this.clock, log: this.log },
    );
    for (const r of this.registry.list()) this.records.set(r.name, r);
    const guests = options.guests;
    this.cgroupOf = options.cgroupOf ?? (guests ? (name) => guests.cgroupOf(name) : null);
    this.handoff = this.cgroupOf
      ? new HandOffDriver({
          logger: this.log.child({ part: 'handoff' }),
          maxBatchMib: options.handOffBatchMib ?? 256,
          whileInflating: options.handOffWhileInflating ?? true,
          onChange: (name) => this.refreshReclaimed(name),
          raiseRoomMib: () => this.limitRoomMib(),
        })
      : null;
  }

  /** The pool counts what a just-attached guest's limit holds (even when the figure looks unchanged). */
  private refreshReclaimedNow(name: string): void {
    const held = this.handoff?.view(name);
    if (!held || !this.pool.has(name)) return;
    this.pool.reportActual(name, held.reclaimedMib);
    this.notify();
  }

  /** A managed guest's limit or hand-off moved: the pool counts what its limit holds now. */
  private refreshReclaimed(name: string): void {
    const held = this.handoff?.view(name);
    if (!held || !this.pool.has(name)) return;
    const r = this.running.get(name);
    if (r) r.guest.handedOffMib = held.handedOffMib;
    if (this.pool.balloonOf(name)?.actualMib === held.reclaimedMib) return;
    this.pool.reportActual(name, held.reclaimedMib);
    this.notify();
  }

  /**
   * MiB the guests' limits may grow by in all: the pool's size minus the
   * managed guests' limits, what the unmanaged ones hold (a balloon in an
   * unmanaged guest frees nothing physical, so it buys no limit), and the
   * memory of each VM being started: startvm gives its cgroup a limit (at
   * most its memory) before the agent's Hello, which neither sum counts until
   * its admission, and a raise meanwhile would take that room as well. So
   * does a VM not running whose cgroup still has the host's limit
   * (guests.holdsLimit): a startvm guest whose session ended while its cgroup
   * stays (an agent that may reconnect, a guest being stopped), an adopted
   * cgroup until its own limit is back.
   */
  private limitRoomMib(): number {
    let usedMib = this.handoff?.limitSumMib() ?? 0;
    for (const name of this.pool.names()) if (!this.handoff?.has(name)) usedMib += this.pool.get(name)?.heldMib ?? 0;
    for (const [name, r] of this.records) if (!this.pool.has(name) && (this.isStarting(name) || this.options.guests?.holdsLimit(name))) usedMib += r.memoryMib;
    return this.pool.sizeMib - usedMib;
  }

  /** MiB a VM being started may take as its cgroup's first limit: limitRoomMib, where the VM itself does not count (the launcher's one figure for it). */
  startLimitRoomMib(name: string): number {
    const r = this.records.get(name);
    const selfMib = r && !this.pool.has(name) && (this.isStarting(name) || this.options.guests?.holdsLimit(name)) ? r.memoryMib : 0;
    return this.limitRoomMib() + selfMib;
  }

  /** The launcher removed a startvm guest's cgroup, or gave an adopted one its own limit back: its room is free for a raise waiting for it. */
  guestGone(_name: string): void {
    this.handoff?.roomChanged();
  }

  /** Resolves once no hand-off step is in flight (tests, benchmarks). */
  handOffsIdle(): Promise<void> {
    return this.handoff?.idle() ?? Promise.resolve();
  }

  /** The guests the host owns (the hand-off asks it for a VM's cgroup: guests?.cgroupOf(name)). */
  get guests(): GuestsCollaborator | undefined {
    return this.options.guests;
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
    this.reclaim.changed();
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
      uptimeMs: this.clock.nowMs() - this.startedAtMs,
      ...(this.options.guests ? {} : { reclaim: this.handoff ? ('physical' as const) : ('budget' as const) }),
      ...this.options.guests?.hostView(),
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
    const running = r && p ? { pool: p, guest: r.guest } : undefined;
    return vmView(record, running, {
      starting: running === undefined && this.isStarting(name),
      sharableMib: running && this.options.facts.sharableMib ? this.options.facts.sharableMib.vm(name) : 0,
      managed: this.options.guests?.vmView(name),
    });
  }

  /**
   * The running VMs with page fusion on, with what their guests report merged
   * (MiB). For the KSM controller's tick every second: at 1,000 guests,
   * building every VmView for it cost more than the tick itself.
   */
  runningPageFusionVms(): Array<{ name: string; sharedMib: number }> {
    const out: Array<{ name: string; sharedMib: number }> = [];
    for (const [name, r] of this.running) {
      if (this.records.get(name)?.pageFusion) out.push({ name, sharedMib: r.guest.stats?.sharedMib ?? 0 });
    }
    return out;
  }

  /**
   * Each running VM's charted figures, as its VmView would show them
   * (balloon.targetMib, balloon.actualMib, stats.availableMib, startedAtMs),
   * without building the view: the dashboard's history samples every VM each
   * second, and a VmView per VM for four numbers was most of that cost.
   */
  forEachBalloonSample(visit: BalloonSampleVisitor): void {
    for (const [name, r] of this.running) {
      const p = this.pool.balloonOf(name);
      if (p === undefined) continue;
      visit(name, r.guest.startedAtMs, p.targetMib, balloonActualMibOf(p.actualMib, r.guest), r.guest.stats?.availableMib);
    }
  }

  /** Whether any running VM's balloon is in auto mode: the policy loop skips its round (and its snapshot of every VM) otherwise. */
  autoPolicyRunning(): boolean {
    for (const name of this.running.keys()) if (this.records.get(name)?.balloonPolicy === 'auto') return true;
    return false;
  }

  /** Whether a VM's guest is connected. */
  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  /** Whether a VM is starting: its guest said Hello and waits for admission, or the launcher is starting it (startvm). */
  isStarting(name: string): boolean {
    return !this.running.has(name) && (this.admitting.has(name) || (this.options.guests?.isStarting(name) ?? false));
  }

  /** The newest pool_exhausted refusal of this VM's guest since it last ran (a new object per refusal), or undefined. */
  poolRefusal(name: string): { message: string } | undefined {
    return this.poolRefusals.get(name);
  }

  /** The launcher's startvm ended (admitted or failed): a target kept for a start that failed is dropped. */
  startEnded(name: string): void {
    if (!this.running.has(name) && !this.isStarting(name)) this.pendingTargets.delete(name);
    // A failed start's memory is room again for a raise waiting for it.
    this.handoff?.roomChanged();
  }

  /**
   * Refuses at once (pool_exhausted, with the figures and who holds what) a
   * start the pool could never fund: what the VM would hold when admitted
   * exceeds the free quota plus everything a reclaim could take from the
   * running VMs. startvm asks before it spawns anything; nothing moves.
   */
  assertCanStart(name: string): void {
    const record = this.record(name);
    const targetMib = Math.min(record.defaultBalloonMib, balloonLimitMib(record.memoryMib));
    try {
      this.reclaim.assertFundable(Pool.admissionNeedMib(record.memoryMib, targetMib, 0), [name], `starting VM '${name}'`);
    } catch (err) {
      this.counters.countRefusal('pool_exhausted');
      throw err;
    }
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
  createVm(input: CreateVmInput): VmView & { token: string } {
    const token = generateToken();
    return { ...this.register(input, hashToken(token), 'createvm'), token };
  }

  // `log`: an auto-registering guest's session logger (its lines fall under the guest budget).
  private register(input: CreateVmInput, tokenHash: string | null, via: 'createvm' | 'auto-register', log: Logger = this.log): VmView {
    const { name, memoryMib } = parseCreateVm(input);
    const record = this.registry.create({ name, memoryMib, tokenHash }, this.clock.nowMs());
    this.records.set(name, record);
    log.info({ vm: name, memoryMib, token: tokenHash !== null, via }, 'VM registered');
    this.notify();
    return this.vmView(name);
  }

  /** Whether a Hello's credential opens this VM: its token, or anything for a token-less auto-registered VM. */
  private credentialOk(record: VmRecord, credential: string): boolean {
    if (this.options.guestAuth === false) return true;
    // A guest the host started carries the launch token it was given instead.
    if (this.options.guests?.acceptsCredential(record.name, credential)) return true;
    return record.tokenHash === null || tokenMatches(credential, record.tokenHash);
  }

  /** unregistervm: removes a powered-off VM. */
  unregisterVm(name: string): void {
    this.record(name);
    if (this.running.has(name) || this.admitting.has(name)) {
      throw new HostError('vm_running', `VM '${name}' is running: unregistervm needs the VM powered off`);
    }
    // A guest the host is starting refuses; an adopted cgroup is let go with the VM.
    this.options.guests?.forget(name);
    this.registry.remove(name);
    this.records.delete(name);
    this.generations.delete(name);
    this.pendingTargets.delete(name);
    this.poolRefusals.delete(name);
    this.log.info({ vm: name }, 'VM unregistered');
    this.notify();
  }

  /** modifyvm: changes settings; resize settings only while the VM is off, policy settings any time. */
  modifyVm(name: string, patch: VmPatch): VmView {
    const record = this.record(name);
    // Starting counts as running (VirtualBox locks a starting VM too): the
    // launcher has already given the agent and the cgroup the old size.
    const s = parseVmPatch(record, patch, this.running.has(name) || this.isStarting(name));
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
  async setBalloon(name: string, targetMib: number, source: TargetSource = 'controlvm', opts: { reclaim?: boolean } = {}): Promise<VmView> {
    const now = this.setBalloonAtOnce(name, targetMib, source, opts);
    if (now !== undefined) return now;
    const t = targetMib;
    try {
      // Under the lock even without reclaim (the policy's deflates, funded
      // from the free quota): memory a waiting start or deflate has reclaimed
      // must not be spent by someone else meanwhile.
      await this.reclaim.withQuotaLock(async () => {
        if (!this.running.has(name)) throw new HostError('not_running', `VM '${name}' stopped while its balloon was being changed`);
        const cost = this.pool.targetCostMib(name, t);
        if (cost > this.pool.freeMib && opts.reclaim === false) {
          throw new HostError('pool_exhausted', `deflating VM '${name}' to ${t} MiB needs ${cost} MiB but only ${this.pool.freeMib} MiB of the pool are free`);
        }
        if (cost > this.pool.freeMib) await this.reclaim.fund(cost, [name], `deflating VM '${name}' to ${t} MiB`, () => this.running.has(name));
        this.applyTarget(name, t, source);
      });
    } catch (err) {
      const e = HostError.from(err);
      if (e.code === 'pool_exhausted') this.counters.countRefusal('pool_exhausted');
      throw e;
    }
    return this.vmView(name);
  }

  /**
   * setBalloon's part that needs no waiting, run synchronously: the VM's view
   * when the target was applied (or kept for a starting VM) at once, or
   * undefined, having changed nothing, when it must wait for the quota lock
   * (then setBalloon does it). Throws what setBalloon rejects with, with the same
   * effects. The admin API's PUT answers from it without a promise.
   */
  setBalloonAtOnce(name: string, targetMib: number, source: TargetSource = 'controlvm', opts: { reclaim?: boolean } = {}): VmView | undefined {
    const record = this.record(name);
    const t = targetMib;
    const problem = balloonTargetProblem(t, record.memoryMib, name);
    if (problem) {
      this.counters.countRefusal('balloon_too_large');
      throw new HostError('out_of_range', problem);
    }
    const guestMemoryMib = this.running.get(name)?.guestMemoryMib;
    if (guestMemoryMib !== undefined && t > guestMemoryMib) {
      // The guest would refuse the frame (above its memory) and the balloon would wait for ever.
      this.counters.countRefusal('balloon_too_large');
      throw new HostError(
        'out_of_range',
        `the guest of VM '${name}' reports ${guestMemoryMib} MiB of memory, less than the VM's ${record.memoryMib} MiB (its agent's --memory-mib or cgroup limit): a balloon of ${t} MiB cannot be held there`,
      );
    }
    if (!this.running.has(name) && this.isStarting(name)) {
      // Kept, not refused: an operator's target right after startvm is
      // applied once the guest is admitted (after its Welcome), latest wins.
      this.pendingTargets.set(name, t);
      this.log.info({ vm: name, targetMib: t, source }, 'balloon target kept until the starting VM is admitted');
      this.notify();
      return this.vmView(name);
    }
    if (!this.running.has(name)) {
      this.counters.countRefusal('not_running');
      throw new HostError('not_running', `VM '${name}' is not running: controlvm needs a running VM (start its agent)`);
    }
    // The policy waits for a start or deflate in progress even when its
    // change costs nothing: lowering a target that a reclaim has just raised
    // would leave the reclaim waiting for memory that is never pinned.
    const cost = this.pool.targetCostMib(name, t);
    if (cost <= 0 && opts.reclaim !== false) {
      this.applyTarget(name, t, source);
      return this.vmView(name);
    }
    // A deflate the free quota covers, with nobody holding or awaiting the
    // lock, is what the lock would do next and at once (the bench's every
    // other round: a promise chain per PUT for nobody to wait for).
    if (cost <= this.pool.freeMib && this.reclaim.lockIdle) {
      this.applyTarget(name, t, source);
      return this.vmView(name);
    }
    return undefined;
  }

  /** Sets a target in the pool and sends it with a new generation; the one path every target takes. */
  private applyTarget(name: string, targetMib: number, source: AnySource): number {
    const r = this.running.get(name);
    if (!r) throw new HostError('not_running', `VM '${name}' is not running`);
    const generation = nextGeneration(this.generations.get(name) ?? 0);
    this.pool.setTarget(name, targetMib, { restore: source === 'rollback' });
    this.generations.set(name, generation);
    r.guest.generation = generation;
    r.link.sendTarget(targetMib, generation);
    this.handoff?.onTarget(name, generation);
    this.counters.countTargetChange?.(name, source);
    // Debug, not info: one line per target is 'balloon reached its target'
    // (or a warning that it stopped short). At 1,000 guests this line was a
    // third of the host's lines, and it spent the guests' log budget that a
    // warning may need.
    r.logger.debug({ targetMib, generation, source }, 'balloon target sent');
    this.notify();
    return generation;
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
    // With guest tokens on, an unknown name and a wrong token get the same
    // answer (code, message, and a token check either way), so that a
    // stranger cannot list the VM names; the host's log tells them apart.
    const denied = (why: string): AdmissionResult => {
      logger.warn(`guest refused: ${why}`);
      return refuse(
        'auth_failed',
        `VM '${name}' is not registered on this host, or its token is wrong or missing (give the agent the token 'balloonctl createvm' printed: --token or MEMBALLOON_TOKEN)`,
      );
    };
    let record = this.records.get(name);
    if (!record) {
      if (!this.options.autoRegister) {
        if (this.options.guestAuth !== false) {
          tokenMatches(hello.credential, UNKNOWN_VM_TOKEN_HASH);
          return denied('the VM is not registered');
        }
        return refuse(
          'unknown_vm',
          `VM '${name}' is not registered on this host (register it with 'balloonctl createvm --name "${name}" --memory MIB', or start the host with --auto-register)`,
        );
      }
      try {
        // Trust on first use: the first Hello's token (if any) becomes the
        // VM's; without one the VM stays token-less (the demo's mode).
        this.register({ name, memoryMib: hello.facts.totalMemoryMib }, hello.credential === '' ? null : hashToken(hello.credential), 'auto-register', logger);
        record = this.record(name);
      } catch (err) {
        return refuse('internal', `VM '${name}' could not be registered: ${(err as Error).message}`);
      }
    }
    // Before anything else about the VM, so that a stranger learns nothing of its state.
    if (!this.credentialOk(record, hello.credential)) return denied('the token is wrong or missing');
    if (this.running.has(name) || this.admitting.has(name)) {
      return refuse('already_connected', `VM '${name}' already has a guest connected`, this.retryAfterMs);
    }
    if (hello.facts.totalMemoryMib !== record.memoryMib) {
      logger.warn(
        { guestMemoryMib: hello.facts.totalMemoryMib, memoryMib: record.memoryMib },
        "the guest's memory differs from the VM's setting; the setting counts",
      );
    }
    const memoryMib = record.memoryMib;
    // The .proto: a balloon or target above the guest's memory is out of
    // range, and for the host the VM's setting is that memory. Counting a
    // clamped figure would take the guest's word for less than it holds.
    for (const [field, mib] of [
      ['actual_mib', hello.balloon.actualMib],
      ['target_mib', hello.balloon.targetMib],
    ] as const) {
      if (mib > memoryMib)
        return refuse(
          'out_of_range',
          `hello.balloon.${field} is ${mib} MiB, above VM '${name}''s memory of ${memoryMib} MiB on this host: deflate the guest's balloon (restart its agent), or raise the VM's memory (balloonctl modifyvm ${name} --memory MIB)`,
        );
    }
    // A guest that already applied targets (generation > 0) is resuming after
    // a dropped connection or a host restart: keep its target. A fresh start
    // gets the VM's default balloon.
    const resuming = hello.balloon.generation > 0;
    // A guest smaller than its VM (an agent's --memory-mib or cgroup limit
    // below the setting) refuses a target above its own memory, Welcome's
    // too, and would reconnect for ever: the target is capped to it (its
    // floor then stops the balloon short, honestly reported).
    const targetMib = Math.min(resuming ? hello.balloon.targetMib : record.defaultBalloonMib, balloonLimitMib(memoryMib), hello.facts.totalMemoryMib);
    const balloonActualMib = Math.min(hello.balloon.actualMib, memoryMib);
    // The floor is the host's to give, so the reclaim knows where the guest
    // would start deflating on its own (the agent's --floor-mib overrides it).
    const floorMib = guestFloorMib(memoryMib);
    this.admitting.add(name);
    this.notify();
    const actualMib = balloonActualMib;
    const needMib = Pool.admissionNeedMib(memoryMib, targetMib, actualMib);
    try {
      await this.reclaim.withQuotaLock(async () => {
        if (!link.open) throw new HostError('not_running', 'the guest disconnected while waiting');
        if (this.closed) throw new HostError('unavailable', 'the host is shutting down');
        await this.reclaim.fund(needMib, [name], `starting VM '${name}'`, () => link.open && !this.closed, logger);
        this.pool.admit(name, { memoryMib, memoryMinMib: record.memoryMinMib, balloonMaxMib: record.balloonMaxMib, targetMib, actualMib });
      });
    } catch (err) {
      const e = HostError.from(err);
      // The guest went away while its admission waited: nobody to refuse.
      if (e.code === 'not_running') return { ok: false, code: e.wireCode, message: e.message, retryAfterMs: 0 };
      if (e.code === 'pool_exhausted') this.poolRefusals.set(name, { message: e.message });
      return refuse(e.wireCode, e.message, this.retryAfterMs);
    } finally {
      this.admitting.delete(name);
      // A refused guest that nobody is starting is powered off: its kept target goes.
      if (!this.running.has(name)) {
        this.startEnded(name);
        this.notify();
      }
    }
    const generation = nextGeneration(this.generations.get(name) ?? 0, hello.balloon.generation);
    this.generations.set(name, generation);
    this.poolRefusals.delete(name);
    const sessionId = randomUUID();
    this.running.set(name, {
      sessionId,
      link,
      logger,
      guest: {
        generation,
        pid: hello.facts.pid,
        lockedMib: Math.min(hello.balloon.lockedMib, balloonActualMib),
        // The guest's word until the hand-off has read its cgroup (attachHandOff):
        // a balloon handed off before a host restart is not shown as neither
        // pinned nor handed off meanwhile (actual = pinned + handed off).
        handedOffMib: Math.min(hello.balloon.handedOffMib ?? 0, balloonActualMib),
        startedAtMs: this.clock.nowMs(),
        status: undefined,
        stats: undefined,
      },
      floorMib,
      guestMemoryMib: hello.facts.totalMemoryMib,
      logged: new Map(),
    });
    this.counters.countSession(name);
    this.attachHandOff(name, sessionId, link, hello, memoryMib, generation);
    // The Welcome carries the first target of the session (the default balloon, or the one it resumes).
    this.counters.countTargetChange?.(name, 'start');
    logger.info(
      {
        sessionId,
        memoryMib,
        targetMib,
        floorMib,
        generation,
        heldMib: needMib,
        agentPid: hello.facts.pid,
        resuming,
        managed: this.handoff?.has(name) ?? false,
      },
      'guest admitted',
    );
    this.notify();
    this.applyPendingTarget(name, logger);
    return {
      ok: true,
      sessionId,
      welcome: {
        sessionId,
        targetMib,
        generation,
        protection: { floorMib, deflateOnPressure: true },
        pageFusion: record.pageFusion,
      },
    };
  }

  /**
   * A target set while the VM was starting goes out now, through setBalloon
   * like any controlvm (a deflate below the start's balloon may reclaim);
   * the session sends it after the Welcome.
   */
  private applyPendingTarget(name: string, logger: Logger): void {
    const targetMib = this.pendingTargets.get(name);
    if (targetMib === undefined) return;
    this.pendingTargets.delete(name);
    this.setBalloon(name, targetMib).catch((err: unknown) =>
      logger.warn({ targetMib, err: (err as Error).message }, 'the balloon target set while the VM was starting could not be applied'),
    );
  }

  /**
   * A managed guest (the launcher has its cgroup now that it runs): the
   * hand-off takes charge. Its memory counts as reclaimed only where its
   * limit holds it, read back from the kernel (a restarted host finds what
   * the last one left), not taken from the guest's word; until the read is
   * done the pool counts its balloon as any guest's.
   */
  private attachHandOff(name: string, sessionId: string, link: GuestLink, hello: Hello, memoryMib: number, generation: number): void {
    const cgroup = this.cgroupOf?.(name) ?? null;
    const handoff = this.handoff;
    if (!handoff || !cgroup || !link.sendHandOff) return;
    const sendHandOff = link.sendHandOff.bind(link);
    void handoff
      .attach(
        name,
        { cgroup, memoryMib, chunkMib: hello.facts.chunkSizeMib, sendHandOff },
        { handedOffMib: hello.balloon.handedOffMib ?? 0, generation: hello.balloon.generation },
      )
      .then(() => {
        const r = this.running.get(name);
        if (!r || r.sessionId !== sessionId) {
          void handoff.detach(name);
          return;
        }
        handoff.onTarget(name, r.guest.generation);
        const status = r.guest.status;
        r.guest.balloonActualMib = status?.actualMib ?? Math.min(hello.balloon.actualMib, memoryMib);
        r.guest.handedOffMib = status?.handedOffMib ?? hello.balloon.handedOffMib ?? 0;
        if (status) handoff.onStatus(name, { ...status, actualMib: Math.min(status.actualMib, memoryMib) });
        this.refreshReclaimedNow(name);
      })
      .catch((err: unknown) =>
        this.log.warn({ vm: name, err: (err as Error).message, generation }, "the hand-off could not read the guest's cgroup: its balloon stays a budget"),
      );
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
    // Read into numbers, not a copy of the entry (pool.get builds one): a
    // status comes with every step of every balloon. The entry itself is
    // live: reportActual below changes it.
    const entry = this.pool.balloonOf(name);
    const beforeTargetMib = entry?.targetMib;
    const beforeActualMib = entry?.actualMib;
    const managed = this.handoff?.has(name) ?? false;
    // A balloon only grows towards a target it was sent: it may sit above the
    // newest target while it deflates, never above both that and what it held
    // (a managed guest's pool actual is what its limit holds, not its balloon).
    const ceilingMib = Math.max(beforeTargetMib ?? 0, managed ? (r.guest.balloonActualMib ?? 0) : (beforeActualMib ?? 0));
    let reportedMib = status.actualMib;
    if (reportedMib > ceilingMib) {
      this.counters.countProtocolError('out_of_range');
      r.logger.warn({ actualMib: reportedMib, ceilingMib, targetMib: beforeTargetMib }, 'balloon actual above every target sent: clamped');
      reportedMib = ceilingMib;
    }
    const overcommitBeforeMib = this.pool.overcommitMib;
    r.guest.status = writeStatus(r.guest.status, status);
    if (managed) {
      // The pool counts what the limit holds; the driver moves it (and calls refreshReclaimed).
      r.guest.balloonActualMib = reportedMib;
      r.guest.handedOffMib = Math.min(status.handedOffMib ?? 0, reportedMib);
      this.handoff!.onStatus(name, { ...status, actualMib: reportedMib });
    }
    const actualMib = this.pool.reportActual(name, managed ? (this.handoff!.view(name)?.reclaimedMib ?? 0) : reportedMib);
    r.guest.lockedMib = Math.min(status.lockedMib, managed ? reportedMib : actualMib);
    this.logBalloonState(r, status, managed ? reportedMib : actualMib);
    const overcommitMib = this.pool.overcommitMib;
    if (overcommitMib > overcommitBeforeMib) {
      // Once when the pool goes over, not per 1 MiB step of the guest's deflate.
      if (overcommitBeforeMib === 0)
        r.logger.warn(
          { actualMib, previousActualMib: beforeActualMib, overcommitMib },
          'the guest deflated on its own: the pool is overcommitted; paying it back from the others',
        );
      this.reclaim.payBack();
    } else if (overcommitBeforeMib > 0 && overcommitMib === 0) {
      this.log.info({ sizeMib: this.pool.sizeMib, heldMib: this.pool.heldMib }, 'the pool is within its size again');
    }
    this.notify();
  }

  /**
   * Logs a balloon's change of state once per target: its target reached
   * (info), stopped short (per reason), deflating on its own. A guest parked
   * at its floor that gives up 1 MiB at a time says so once, not per step.
   */
  private logBalloonState(r: Running, status: BalloonStatus, actualMib: number): void {
    if (status.generation !== r.guest.generation) return;
    const kind =
      status.state === 'steady' && actualMib === status.targetMib
        ? 'reached'
        : status.state === 'short'
          ? `short:${status.reason}`
          : status.reason === 'guest_pressure'
            ? 'pressure'
            : undefined;
    if (kind === undefined || r.logged.get(kind) === status.generation) return;
    r.logged.set(kind, status.generation);
    const fields = { targetMib: status.targetMib, actualMib, generation: status.generation, reason: status.reason };
    if (kind === 'reached') r.logger.info(fields, 'balloon reached its target');
    else if (kind === 'pressure') r.logger.warn({ ...fields, detail: status.detail }, 'the guest is deflating on its own (pressure)');
    else r.logger.warn({ ...fields, detail: status.detail }, 'balloon stopped short');
  }

  /** MemoryStats from a guest (advisory; clamped to the VM's memory). */
  onStats(name: string, sessionId: string, stats: MemoryStats): void {
    const r = this.running.get(name);
    if (!r || r.sessionId !== sessionId) return;
    // In place: see writeStatsView.
    r.guest.stats = writeStatsView(r.guest.stats, stats, this.records.get(name)?.memoryMib ?? 0, this.clock.nowMs());
    if (balloonAtRest(r.guest.status, r.guest.generation)) this.pool.reportAvailable(name, r.guest.stats.availableMib, r.floorMib);
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
    // a VM that powers off gets its cgroup back from the launcher (removed,
    // or an adopted one's own limit restored once the hand-off has stopped).
    const handOffStopped = this.handoff?.detach(name) ?? Promise.resolve();
    this.options.guests?.sessionEnded(name, handOffStopped);
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
    this.reclaim.close();
  }
}

/**
 * Whether a guest's balloon is at rest, so that its statistics and the
 * pool's actual describe the same moment: the ceiling a reclaim may ask for
 * is the actual plus what is available above the floor. While the balloon
 * moves (or a newer target is on its way), the chunks committed since its
 * last status are already used memory in the statistics but not yet in the
 * actual, and the ceiling would come out low by up to a step (two workers'
 * worth); the ceiling learned at rest is kept until the balloon rests again.
 */
function balloonAtRest(status: BalloonStatus | undefined, sentGeneration: number): boolean {
  if (!status) return true;
  return (status.state === 'steady' || status.state === 'short') && status.generation === sentGeneration;
}
