// Drives KSM from the sharing table, the way oVirt MOM's KSM controller
// does: each tick reads the kernel's state, asks the pure policy for the
// settings and writes only what changed. When no page-fusion VM runs it
// puts KSM back as it found it. It never throws: where KSM cannot be driven
// the status says why, and the hint layer goes on without it.
//
// It also keeps the policy's burst budget: a burst starts when hints show
// unmerged candidates (again when more arrive) and is allowed for a few of
// the kernel's full scans and a few seconds. kick() ticks at once, so a
// burst starts when the hints arrive, not at the next timer tick.
import { totalmem } from 'node:os';
import { HostError } from '../errors.js';
import { decideKsm, DEFAULT_KSM_POLICY, type KsmPolicy, type KsmSettings } from './ksm-policy.js';
import { KsmSysfs, probeKsm, type KsmProbe, type KsmState } from './ksm-sysfs.js';
import { BYTES_PER_MIB } from '@memballoon/protocol';

/** KSM as showhostinfo shows it (HostView.ksm). */
export interface KsmStatusView {
  available: boolean;
  running: boolean;
  detail: string;
}

/** What the controller needs from the sharing table and the sessions at each tick. */
export interface KsmTickInputs {
  fusionVmsRunning: number;
  /** MiB of mergeable regions that hints call sharable (summed over page-fusion VMs). */
  sharableMib: number;
  /** Of those, MiB not merged yet (summed per VM of unmergedMib). */
  unmergedMib: number;
}

/** The controller's full report: status, the kernel's figures and the last decision. */
export interface KsmReport extends KsmStatusView {
  /** Whether this host has taken KSM over (and will restore it). */
  driving: boolean;
  /** MiB the kernel saves host-wide (pages_sharing); 0 where it cannot be read. */
  sharedMib: number;
  kernel: KsmState | null;
  /** The settings last written (null while not driving). */
  settings: KsmSettings | null;
  /** Whether the last decision was a hint-steered burst. */
  burst: boolean;
  /** ksmd's CPU time so far (user + system), in ms; null where ksmd is not known. */
  ksmdCpuMs: number | null;
}

/** Options of KsmController. */
export interface KsmControllerOptions {
  sysfs?: KsmSysfs;
  /** Whether KSM can be driven (default: probeKsm on the sysfs directory). */
  probe?: () => KsmProbe;
  /** The host's memory in MiB (default: the machine's). */
  memTotalMib?: number;
  policy?: KsmPolicy;
  pageSizeBytes?: number;
  /** The clock of the burst budget (default Date.now). */
  nowMs?: () => number;
}

// A burst in progress: where it started, in full scans and time, and the
// most sharable memory seen since (more starts a new burst).
interface Burst {
  startFullScans: number;
  startMs: number;
  sharableMib: number;
}

/** How often an idle controller (no page-fusion VM, not driving) still reads the kernel, in ms. */
const IDLE_READ_INTERVAL_MS = 10_000;

/** The KSM controller of a host. */
export class KsmController {
  readonly #sysfs: KsmSysfs;
  readonly #probe: () => KsmProbe;
  readonly #memTotalMib: number;
  readonly #policy: KsmPolicy;
  readonly #pageSizeBytes: number;
  readonly #nowMs: () => number;
  #report: KsmReport;
  #timer: NodeJS.Timeout | undefined;
  #inputs: (() => KsmTickInputs) | undefined;
  #kicked: NodeJS.Immediate | undefined;
  #burst: Burst | null = null;
  #lastReadMs = Number.NEGATIVE_INFINITY;

  constructor(opts: KsmControllerOptions = {}) {
    this.#sysfs = opts.sysfs ?? new KsmSysfs();
    this.#probe = opts.probe ?? (() => probeKsm(this.#sysfs.dir));
    this.#memTotalMib = opts.memTotalMib ?? Math.round(totalmem() / BYTES_PER_MIB);
    this.#policy = opts.policy ?? DEFAULT_KSM_POLICY;
    this.#pageSizeBytes = opts.pageSizeBytes ?? 4096;
    this.#nowMs = opts.nowMs ?? Date.now;
    const probe = this.#probe();
    const kernel = this.#tryRead();
    this.#report = {
      available: probe.ok,
      running: kernel?.run ?? false,
      detail: probe.ok ? 'KSM is available; driven while page-fusion VMs run' : probe.detail,
      driving: false,
      sharedMib: this.#sharedMib(kernel),
      kernel,
      settings: null,
      burst: false,
      ksmdCpuMs: null,
    };
  }

  /** The latest report (as of the last tick, or construction). */
  report(): KsmReport {
    return this.#report;
  }

  /** Reads the kernel, decides and applies. Never throws. */
  tick(inputs: KsmTickInputs): KsmReport {
    // Idle (no page-fusion VM, not driving): the kernel's figures are only
    // for showhostinfo, and ten sysfs reads a second are not worth it then.
    const now = this.#nowMs();
    if (inputs.fusionVmsRunning <= 0 && !this.#sysfs.driving && now - this.#lastReadMs < IDLE_READ_INTERVAL_MS) return this.#report;
    this.#lastReadMs = now;
    const probe = this.#probe();
    let kernel = this.#tryRead();
    if (!probe.ok || !kernel) {
      return this.#set({ available: false, running: kernel?.run ?? false, detail: probe.ok ? `cannot read ${this.#sysfs.dir}` : probe.detail, kernel });
    }
    const decision = decideKsm(
      {
        fusionVmsRunning: inputs.fusionVmsRunning,
        sharableMib: inputs.sharableMib,
        unmergedMib: inputs.unmergedMib,
        pagesShared: kernel.pagesShared,
        pagesSharing: kernel.pagesSharing,
        pagesToScan: kernel.pagesToScan,
        memTotalMib: this.#memTotalMib,
        burstAllowed: this.#burstAllowed(inputs, kernel.fullScans),
        pageSizeBytes: this.#pageSizeBytes,
      },
      this.#policy,
    );
    try {
      if (!decision.drive) {
        this.#sysfs.restore();
      } else {
        this.#sysfs.apply(decision.settings);
      }
      kernel = this.#tryRead() ?? kernel;
      return this.#set({
        available: true,
        running: kernel.run,
        detail: decision.reason,
        kernel,
        settings: decision.drive ? decision.settings : null,
        burst: decision.drive && decision.burst === true,
      });
    } catch (err) {
      const e = HostError.from(err, 'ksm_io');
      // Another host driving KSM (ksm_unavailable: its driver lock) is not a
      // fault of KSM: it is there and merging, just not ours to drive. A
      // write the kernel refused (ksm_io) is.
      return this.#set({ available: e.code === 'ksm_unavailable', running: kernel.run, detail: e.message, kernel });
    }
  }

  /** Ticks every intervalMs with fresh inputs until close(); the timer does not keep the process alive. */
  start(intervalMs: number, inputs: () => KsmTickInputs): void {
    this.stop();
    this.#inputs = inputs;
    this.#run();
    this.#timer = setInterval(() => this.#run(), intervalMs);
    this.#timer.unref();
  }

  /** Ticks once more, soon (coalesced), between the timer's ticks: the hints changed. No-op unless started. */
  kick(): void {
    if (!this.#inputs || this.#kicked) return;
    this.#kicked = setImmediate(() => {
      this.#kicked = undefined;
      this.#run();
    });
    this.#kicked.unref();
  }

  /** Stops the timer; KSM stays as it is. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#kicked) clearImmediate(this.#kicked);
    this.#timer = undefined;
    this.#kicked = undefined;
    this.#inputs = undefined;
  }

  #run(): void {
    if (!this.#inputs) return;
    try {
      this.tick(this.#inputs());
    } catch {
      /* inputs() failed: try again next tick */
    }
  }

  // The burst budget: a burst starts when unmerged candidates appear (again
  // when more sharable memory arrives) and lasts a few full scans and seconds.
  #burstAllowed(inputs: KsmTickInputs, fullScans: number): boolean {
    if (inputs.unmergedMib <= 0 || inputs.fusionVmsRunning <= 0) {
      this.#burst = null;
      return false;
    }
    const now = this.#nowMs();
    if (!this.#burst || inputs.sharableMib > this.#burst.sharableMib) {
      this.#burst = { startFullScans: fullScans, startMs: now, sharableMib: inputs.sharableMib };
    }
    return fullScans - this.#burst.startFullScans < this.#policy.burstMaxFullScans && now - this.#burst.startMs < this.#policy.burstMaxMs;
  }

  /** Stops ticking and puts KSM back as the host found it. Never throws. */
  close(): KsmReport {
    this.stop();
    try {
      this.#sysfs.restore();
    } catch (err) {
      return this.#set({ detail: HostError.from(err, 'ksm_io').message });
    }
    const kernel = this.#tryRead();
    return this.#set({ running: kernel?.run ?? false, kernel, settings: null });
  }

  #set(patch: Partial<KsmReport>): KsmReport {
    const next = { ...this.#report, ...patch, settings: patch.settings === undefined ? null : patch.settings, burst: patch.burst ?? false };
    next.driving = this.#sysfs.driving;
    next.ksmdCpuMs = this.#ksmdCpuMs();
    next.sharedMib = this.#sharedMib(next.kernel);
    this.#report = next;
    return next;
  }

  #ksmdCpuMs(): number | null {
    try {
      return this.#sysfs.ksmd?.cpuMs() ?? null;
    } catch {
      return null;
    }
  }

  #tryRead(): KsmState | null {
    try {
      return this.#sysfs.read();
    } catch {
      return null;
    }
  }

  #sharedMib(kernel: KsmState | null): number {
    return kernel ? (kernel.pagesSharing * this.#pageSizeBytes) / BYTES_PER_MIB : 0;
  }
}
