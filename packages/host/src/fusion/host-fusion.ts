// Page fusion as the host service uses it: the sharing table fed by the
// guest sessions' frames (through the session's frame hooks), the figures
// the views show, and the KSM controller ticking while page-fusion VMs run.
// One object, so the service and the server need only a few lines to wire it.
import { ProtocolError, type SharedRegion } from '@memballoon/protocol';
import { HostError } from '../errors.js';
import { SessionHints } from './hints.js';
import { KsmController, type KsmReport, type KsmStatusView, type KsmTickInputs } from './ksm-controller.js';
import { unmergedMib } from './ksm-policy.js';
import { SharingTable, type HostSharing, type SharingTableOptions } from './table.js';

/** The hooks a guest session calls for page-fusion frames (GuestFrameHooks of ../session). */
export interface FusionFrameHooks {
  sharedRegion(vmName: string, frame: SharedRegion): void;
  sharedRegionRemoved(vmName: string, regionId: number): void;
  sessionEnded(vmName: string): void;
}

/** What the KSM timer needs to know about a VM (from the service's snapshot). */
export interface FusionVmState {
  name: string;
  state: 'running' | 'poweroff';
  pageFusion: boolean;
  /** What the guest reports as merged (MemoryStats.shared_bytes, in MiB). */
  sharedMib?: number;
}

/** Options of HostFusion. */
export interface HostFusionOptions extends SharingTableOptions {
  /** The KSM controller (default: one on /sys/kernel/mm/ksm); null: never drive KSM. */
  ksm?: KsmController | null;
  /** Interval of the KSM controller, in ms (default 1000). */
  ksmIntervalMs?: number;
}

/** Page fusion of one host: hints table, frame hooks, KSM controller. */
export class HostFusion {
  readonly table: SharingTable;
  readonly ksm: KsmController | null;
  /** The hooks to hand to the guest sessions. */
  readonly hooks: FusionFrameHooks;
  readonly #sessions = new Map<string, SessionHints>();
  readonly #ksmIntervalMs: number;

  constructor(opts: HostFusionOptions = {}) {
    this.table = new SharingTable(opts);
    this.ksm = opts.ksm === undefined ? new KsmController() : opts.ksm;
    this.#ksmIntervalMs = opts.ksmIntervalMs ?? 1000;
    this.hooks = {
      sharedRegion: (vm, frame) => {
        try {
          // A completed region may bring new candidates: KSM hears of them now,
          // not at its next tick (a burst, ksm-policy.ts).
          if (this.#hints(vm).onSharedRegion(frame)) this.ksm?.kick();
        } catch (err) {
          // As a ProtocolError of a non-fatal code, the session refuses the
          // frame with an Error and goes on: a bad hint is not a broken stream.
          const e = HostError.from(err, 'invalid_region');
          throw new ProtocolError(e.wireCode, e.message, { cause: e });
        }
      },
      sharedRegionRemoved: (vm, regionId) => this.#hints(vm).onSharedRegionRemoved({ regionId }),
      sessionEnded: (vm) => {
        this.#sessions.get(vm)?.close();
        this.#sessions.delete(vm);
      },
    };
  }

  /** MiB of a VM's hinted pages that another VM holds too. */
  vmSharableMib(vm: string): number {
    return round1(this.table.vm(vm).sharableMib);
  }

  /** Host-wide sharable MiB: the sum of the VMs' sharableMib (HostView.sharableMib). */
  hostSharableMib(): number {
    return round1(this.table.host().sharableMib);
  }

  /** Host-wide figures of the table. */
  hostSharing(): HostSharing {
    return this.table.host();
  }

  /** KSM for showhostinfo. */
  ksmStatus(): KsmStatusView {
    const r = this.ksm?.report();
    if (!r) return { available: false, running: false, detail: 'KSM is not driven by this host (turned off)' };
    return { available: r.available, running: r.running, detail: r.detail };
  }

  /** The KSM controller's full report (null when it is off). */
  ksmReport(): KsmReport | null {
    return this.ksm?.report() ?? null;
  }

  /** What the KSM controller is told at a tick, from the VMs' states. */
  tickInputs(vms: readonly FusionVmState[]): KsmTickInputs {
    let fusionVmsRunning = 0;
    let sharableMib = 0;
    let unmerged = 0;
    for (const vm of vms) {
      if (vm.state !== 'running' || !vm.pageFusion) continue;
      fusionVmsRunning++;
      const s = this.table.vm(vm.name).mergeableSharableMib;
      sharableMib += s;
      unmerged += unmergedMib(s, vm.sharedMib ?? 0);
    }
    return { fusionVmsRunning, sharableMib, unmergedMib: unmerged };
  }

  /** Runs the KSM controller every ksmIntervalMs on the VMs `vms()` returns. */
  start(vms: () => readonly FusionVmState[]): void {
    this.ksm?.start(this.#ksmIntervalMs, () => this.tickInputs(vms()));
  }

  /** Stops the controller and puts KSM back as it was found. */
  close(): void {
    this.ksm?.close();
    for (const s of this.#sessions.values()) s.close();
    this.#sessions.clear();
  }

  #hints(vm: string): SessionHints {
    let s = this.#sessions.get(vm);
    if (!s) {
      s = new SessionHints(this.table, vm);
      this.#sessions.set(vm, s);
    }
    return s;
  }
}

// Views show MiB with one decimal: a page is 1/256 MiB, and 31.99609375 is noise.
function round1(mib: number): number {
  return Math.round(mib * 10) / 10;
}
