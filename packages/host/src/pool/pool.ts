// The memory pool: pure bookkeeping of what running VMs hold, with the
// invariant that the sum of what they hold never exceeds the pool. No I/O, no
// clocks: the service feeds it events and asks it for plans; it answers
// synchronously and throws HostError when an operation would break a rule.
import { HostError } from '../errors.js';
import { autoBalloonCapMib, balloonLimitMib, floorMarginMib, heldMib, type BalloonCapSettings } from './balloon-rules.js';

/** The settings of a VM that the pool needs to reclaim from it. */
export type PoolVmSettings = BalloonCapSettings;

/** One running VM as the pool sees it. */
export interface PoolVm extends PoolVmSettings {
  targetMib: number;
  /** The balloon the guest reports, clamped to its memory. */
  actualMib: number;
  /**
   * The largest balloon the guest can hold without going below its floor
   * plus a margin, from its latest statistics (see reportAvailable);
   * undefined until it has sent any.
   */
  ceilingMib?: number | undefined;
}

/** Read-only view of a running VM with what it holds. */
export interface PoolVmView extends PoolVm {
  heldMib: number;
}

/** A plan to reclaim memory from running VMs: new (larger) targets per VM. */
export interface ReclaimPlan {
  /** MiB to free beyond the free quota (0: nothing to do). */
  deficitMib: number;
  /** New targets, all larger than the current ones. */
  targets: Map<string, number>;
}

/** The pool of `sizeMib` MiB shared by the running VMs. */
export class Pool {
  private readonly vms = new Map<string, PoolVm>();
  private heldSumMib = 0;
  private reclaimedSumMib = 0;

  constructor(readonly sizeMib: number) {
    if (!Number.isSafeInteger(sizeMib) || sizeMib < 0) throw new HostError('invalid_argument', `the pool size must be a whole number of MiB (got ${sizeMib})`);
  }

  /** Sum over running VMs of memory - min(target, actual). */
  get heldMib(): number {
    return this.heldSumMib;
  }

  /** Sum over running VMs of min(target, actual): memory balloons have really pinned. */
  get reclaimedMib(): number {
    return this.reclaimedSumMib;
  }

  /** What can be granted now without reclaiming (0 while overcommitted). */
  get freeMib(): number {
    return Math.max(0, this.sizeMib - this.heldSumMib);
  }

  /** MiB held beyond the pool: only a guest deflating on its own can cause it. */
  get overcommitMib(): number {
    return Math.max(0, this.heldSumMib - this.sizeMib);
  }

  /** Whether a VM is running (admitted). */
  has(name: string): boolean {
    return this.vms.has(name);
  }

  /** A running VM with what it holds, or undefined. */
  get(name: string): PoolVmView | undefined {
    const vm = this.vms.get(name);
    // A literal, not a spread: copying by spread was a few percent of the host's time at 1,000 guests.
    return (
      vm && {
        memoryMib: vm.memoryMib,
        memoryMinMib: vm.memoryMinMib,
        balloonMaxMib: vm.balloonMaxMib,
        targetMib: vm.targetMib,
        actualMib: vm.actualMib,
        ceilingMib: vm.ceilingMib,
        heldMib: heldMib(vm.memoryMib, vm.targetMib, vm.actualMib),
      }
    );
  }

  /** A running VM's target and actual balloon, or undefined: the live entry, not a copy (read it at once; for paths taken per frame or per VM each second). */
  balloonOf(name: string): Readonly<{ targetMib: number; actualMib: number }> | undefined {
    return this.vms.get(name);
  }

  /** Names of the running VMs. */
  names(): string[] {
    return [...this.vms.keys()];
  }

  /** What a VM starting with this balloon would hold: memory - min(target, actual). */
  static admissionNeedMib(memoryMib: number, targetMib: number, actualMib: number): number {
    return heldMib(memoryMib, targetMib, Math.min(actualMib, memoryMib));
  }

  /** Admits a starting VM; throws pool_exhausted if the free quota cannot hold it. */
  admit(name: string, vm: PoolVm): void {
    if (this.vms.has(name)) throw new HostError('already_exists', `VM '${name}' is already running`);
    checkVm(name, vm);
    // One shape for every entry (ceilingMib present from the start): get()
    // and the accounting run for every frame and request.
    const entry: PoolVm = {
      memoryMib: vm.memoryMib,
      memoryMinMib: vm.memoryMinMib,
      balloonMaxMib: vm.balloonMaxMib,
      targetMib: vm.targetMib,
      actualMib: Math.min(vm.actualMib, vm.memoryMib),
      ceilingMib: vm.ceilingMib,
    };
    const need = heldMib(entry.memoryMib, entry.targetMib, entry.actualMib);
    if (need > this.freeMib) {
      throw new HostError('pool_exhausted', `VM '${name}' needs ${need} MiB of the pool but only ${this.freeMib} MiB of ${this.sizeMib} MiB are free`);
    }
    this.vms.set(name, entry);
    this.account(entry, +1);
  }

  /** Removes a VM that stopped; everything it held returns to the pool. Returns what it held. */
  release(name: string): number {
    const vm = this.vms.get(name);
    if (!vm) return 0;
    this.account(vm, -1);
    this.vms.delete(name);
    return heldMib(vm.memoryMib, vm.targetMib, vm.actualMib);
  }

  /**
   * MiB more the VM would hold with this target (negative: less). A larger
   * balloon frees memory only once the guest pins it, so raising the target
   * never costs anything and lowering it costs at once.
   */
  targetCostMib(name: string, targetMib: number): number {
    const vm = this.require(name);
    return heldMib(vm.memoryMib, targetMib, vm.actualMib) - heldMib(vm.memoryMib, vm.targetMib, vm.actualMib);
  }

  /**
   * Sets a VM's target; throws out_of_range (90 % rule) or pool_exhausted (a
   * deflate the free quota cannot fund). `restore: true` is the undoing of a
   * reclaim: it puts back a target the pool had admitted, and is never
   * refused for quota, because the memory it needs is what the reclaim freed
   * from this very VM (if guests deflating on their own took it meanwhile,
   * the pool shows the overcommit and the service pays it back).
   */
  setTarget(name: string, targetMib: number, opts: { restore?: boolean } = {}): void {
    const vm = this.require(name);
    const limit = balloonLimitMib(vm.memoryMib);
    if (!Number.isSafeInteger(targetMib) || targetMib < 0 || targetMib > limit) {
      throw new HostError('out_of_range', `a balloon of ${targetMib} MiB is not allowed for VM '${name}' (0 to ${limit} MiB)`);
    }
    const cost = this.targetCostMib(name, targetMib);
    if (cost > 0 && cost > this.freeMib && opts.restore !== true) {
      throw new HostError('pool_exhausted', `deflating VM '${name}' to ${targetMib} MiB needs ${cost} MiB of the pool but only ${this.freeMib} MiB are free`);
    }
    this.account(vm, -1);
    vm.targetMib = targetMib;
    this.account(vm, +1);
  }

  /**
   * Records the balloon a guest reports. Values beyond its memory are clamped:
   * a guest's word is advisory. An actual above the target does not count
   * (held uses min(target, actual)). Returns the clamped value.
   */
  reportActual(name: string, actualMib: number): number {
    const vm = this.require(name);
    const clamped = Math.max(0, Math.min(Number.isFinite(actualMib) ? Math.floor(actualMib) : 0, vm.memoryMib));
    this.account(vm, -1);
    vm.actualMib = clamped;
    this.account(vm, +1);
    return clamped;
  }

  /**
   * Records a guest's available memory (its latest statistics) against the
   * floor it was given: the balloon it can reach is what it holds now plus
   * what is available above the floor and a margin (a balloon's own pages
   * move available memory MiB for MiB, so this ceiling does not move with
   * the balloon, only with the guest's workload).
   */
  reportAvailable(name: string, availableMib: number, floorMib: number): void {
    const vm = this.require(name);
    const headroomMib = Math.floor(availableMib) - floorMib - floorMarginMib(vm.memoryMib);
    vm.ceilingMib = Math.max(0, vm.actualMib + headroomMib);
  }

  /**
   * The largest balloon a reclaim may give this VM: the automatic cap (90 %,
   * minimum, maximum) and, once the guest has sent statistics, its ceiling
   * above its floor: a reclaim never pushes a guest into deflating on its own.
   */
  reclaimCapMib(name: string): number {
    const vm = this.require(name);
    const capMib = autoBalloonCapMib(vm);
    return vm.ceilingMib === undefined ? capMib : Math.min(capMib, vm.ceilingMib);
  }

  /** MiB a reclaim could free from the running VMs except `exclude`, computed from their caps and floors before any balloon moves. */
  reclaimableMib(exclude: readonly string[] = []): number {
    return this.rooms(exclude).reduce((sum, r) => sum + r.roomMib, 0);
  }

  /** Updates the minimum and maximum a VM may be reclaimed to (policy settings). */
  updateSettings(name: string, settings: Pick<PoolVmSettings, 'memoryMinMib' | 'balloonMaxMib'>): void {
    const vm = this.require(name);
    vm.memoryMinMib = settings.memoryMinMib;
    vm.balloonMaxMib = settings.balloonMaxMib;
  }

  /**
   * Plans how to make `needMib` free by inflating the balloons of running VMs
   * (except `exclude`), each in proportion to what it can still give (within
   * its reclaim cap: the 90 % rule, its minimum and maximum, its guest's
   * floor). Throws pool_exhausted, with the true figures, when even that
   * cannot free enough: decided before any balloon moves. The plan only
   * raises targets. `needMib` 0 plans the payback of an overcommit.
   */
  planReclaim(needMib: number, exclude: readonly string[] = []): ReclaimPlan {
    // An overcommit (guests that deflated on their own) is owed first.
    const deficitMib = needMib - (this.sizeMib - this.heldSumMib);
    const targets = new Map<string, number>();
    if (deficitMib <= 0) return { deficitMib: 0, targets };
    const rooms = this.rooms(exclude);
    const totalRoomMib = rooms.reduce((sum, r) => sum + r.roomMib, 0);
    if (totalRoomMib < deficitMib) {
      const owed = this.overcommitMib > 0 ? ` (${this.overcommitMib} MiB of it owed: guests deflated on their own)` : '';
      throw new HostError(
        'pool_exhausted',
        `${needMib} MiB are needed but only ${this.freeMib} MiB of the ${this.sizeMib} MiB pool are free and ${totalRoomMib} MiB more can be reclaimed from running VMs (within their minimums and above their guests' floors): ${deficitMib - totalRoomMib} MiB short${owed}`,
      );
    }
    // Largest-remainder rounding: integer shares that sum to the deficit
    // exactly, each at most its room (the ratio deficit/total is at most 1).
    const shares = rooms.map((r) => {
      const exact = (deficitMib * r.roomMib) / totalRoomMib;
      return { r, share: Math.floor(exact), frac: exact - Math.floor(exact) };
    });
    let remainder = deficitMib - shares.reduce((s, x) => s + x.share, 0);
    for (const x of [...shares].sort((a, b) => b.frac - a.frac || a.r.name.localeCompare(b.r.name))) {
      if (remainder <= 0) break;
      if (x.share < x.r.roomMib) {
        x.share += 1;
        remainder -= 1;
      }
    }
    for (const { r, share } of shares) {
      const targetMib = r.baseMib + share;
      if (share > 0 && targetMib > r.vm.targetMib) targets.set(r.name, targetMib);
    }
    return { deficitMib, targets };
  }

  /**
   * Who holds the pool, for a refusal: each running VM's held MiB, what its
   * balloon has pinned and what a reclaim could still take from it (largest
   * holders first, at most 8 named; `exclude` as for planReclaim), so the
   * operator sees where the memory is.
   */
  holdersText(exclude: readonly string[] = []): string {
    if (this.vms.size === 0) return 'no VM is running';
    const roomOf = new Map(this.rooms(exclude).map((r) => [r.name, r.roomMib]));
    const all = this.names()
      .map((name) => ({ name, ...(this.get(name) as PoolVmView) }))
      .sort((a, b) => b.heldMib - a.heldMib || a.name.localeCompare(b.name));
    const named = all
      .slice(0, 8)
      .map(
        (v) =>
          `'${v.name}' holds ${v.heldMib} MiB (balloon ${Math.min(v.targetMib, v.actualMib)} MiB reclaimed, ${roomOf.get(v.name) ?? 0} MiB more reclaimable)`,
      );
    return `running: ${named.join(', ')}${all.length > 8 ? ` and ${all.length - 8} more` : ''}`;
  }

  /** A consistent copy of every running VM, for views and tests. */
  list(): PoolVmView[] {
    return this.names().map((n) => this.get(n) as PoolVmView);
  }

  /**
   * What each running VM (but `exclude`) could still give: from the smaller
   * of target and actual up to its reclaim cap. A guest that holds its
   * balloon below its target on its own (pressure, a floor) gives nothing
   * more: the caller excludes it.
   */
  private rooms(exclude: readonly string[]): Array<{ name: string; vm: PoolVm; baseMib: number; roomMib: number }> {
    const rooms: Array<{ name: string; vm: PoolVm; baseMib: number; roomMib: number }> = [];
    for (const [name, vm] of this.vms) {
      if (exclude.includes(name)) continue;
      const baseMib = Math.min(vm.targetMib, vm.actualMib);
      const roomMib = Math.max(0, this.reclaimCapMib(name) - baseMib);
      if (roomMib > 0) rooms.push({ name, vm, baseMib, roomMib });
    }
    return rooms;
  }

  private require(name: string): PoolVm {
    const vm = this.vms.get(name);
    if (!vm) throw new HostError('not_running', `VM '${name}' is not running`);
    return vm;
  }

  private account(vm: PoolVm, sign: 1 | -1): void {
    const reclaimed = Math.min(vm.targetMib, vm.actualMib);
    this.heldSumMib += sign * (vm.memoryMib - reclaimed);
    this.reclaimedSumMib += sign * reclaimed;
  }
}

function checkVm(name: string, vm: PoolVm): void {
  const ints = [vm.memoryMib, vm.memoryMinMib, vm.balloonMaxMib, vm.targetMib, vm.actualMib];
  if (!ints.every((n) => Number.isSafeInteger(n) && n >= 0) || vm.memoryMib === 0) {
    throw new HostError('invalid_argument', `VM '${name}' has invalid sizes`);
  }
  if (vm.targetMib > balloonLimitMib(vm.memoryMib)) {
    throw new HostError('out_of_range', `a balloon of ${vm.targetMib} MiB is 90 % or more of VM '${name}''s memory of ${vm.memoryMib} MiB`);
  }
}
