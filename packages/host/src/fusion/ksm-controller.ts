// Drives KSM from the sharing table, the way oVirt MOM's KSM controller
// does: each tick reads the kernel's state, asks the pure policy for the
// settings and writes only what changed. When no page-fusion VM runs it
// puts KSM back as it found it. It never throws: where KSM cannot be driven
// the status says why, and the hint layer goes on without it.
import { totalmem } from 'node:os';
import { HostError } from '../errors.js';
import { decideKsm, MOM_KSM_POLICY, type KsmPolicy, type KsmSettings } from './ksm-policy.js';
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
}

/** The KSM controller of a host. */
export class KsmController {
  readonly #sysfs: KsmSysfs;
  readonly #probe: () => KsmProbe;
  readonly #memTotalMib: number;
  readonly #policy: KsmPolicy;
  readonly #pageSizeBytes: number;
  #report: KsmReport;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: KsmControllerOptions = {}) {
    this.#sysfs = opts.sysfs ?? new KsmSysfs();
    this.#probe = opts.probe ?? (() => probeKsm(this.#sysfs.dir));
    this.#memTotalMib = opts.memTotalMib ?? Math.round(totalmem() / BYTES_PER_MIB);
    this.#policy = opts.policy ?? MOM_KSM_POLICY;
    this.#pageSizeBytes = opts.pageSizeBytes ?? 4096;
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
    };
  }

  /** The latest report (as of the last tick, or construction). */
  report(): KsmReport {
    return this.#report;
  }

  /** Reads the kernel, decides and applies. Never throws. */
  tick(inputs: KsmTickInputs): KsmReport {
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
      return this.#set({ available: true, running: kernel.run, detail: decision.reason, kernel, settings: decision.drive ? decision.settings : null });
    } catch (err) {
      const e = HostError.from(err, 'ksm_io');
      // Another host driving KSM is not a fault of KSM: it is there, just not ours.
      return this.#set({ available: e.code !== 'ksm_unavailable', running: kernel.run, detail: e.message, kernel });
    }
  }

  /** Ticks every intervalMs with fresh inputs until close(); the timer does not keep the process alive. */
  start(intervalMs: number, inputs: () => KsmTickInputs): void {
    this.stop();
    const run = (): void => {
      try {
        this.tick(inputs());
      } catch {
        /* inputs() failed: try again next tick */
      }
    };
    run();
    this.#timer = setInterval(run, intervalMs);
    this.#timer.unref();
  }

  /** Stops the timer; KSM stays as it is. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
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
    const next = { ...this.#report, ...patch, settings: patch.settings === undefined ? null : patch.settings };
    next.driving = this.#sysfs.driving;
    next.sharedMib = this.#sharedMib(next.kernel);
    this.#report = next;
    return next;
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
