// The read model: the JSON shapes the service produces, which the admin API
// returns, `balloonctl --json` prints, and the dashboard and /metrics read.
// Scripts parse them, so these field names are a contract (the CLI section of
// the top README.md, "Admin API" in packages/host/README.md): camelCase, units
// in names. Add fields; never rename or remove one.
import type { GuestsHostView, ManagedGuestView } from '../guests/views.js';
import type { BalloonState, LockState, MemoryDomain, ShortfallReason } from '@memballoon/protocol';

/** A VM's balloon while it runs. */
export interface BalloonView {
  targetMib: number;
  /** pinned + handed off. */
  actualMib: number;
  lockedMib: number;
  /** Part of actualMib handed off to the guest's cgroup limit (pages released; 0 for unmanaged guests). */
  handedOffMib: number;
  state: BalloonState;
  /** Why the balloon stopped short ('none' when it did not). */
  reason: ShortfallReason;
  lock: LockState;
  /** Generation of the newest target sent to the guest. */
  generation: number;
}

/** The guest's latest statistics, in MiB where they are sizes. */
export interface GuestStatsView {
  totalMib: number;
  freeMib: number;
  availableMib: number;
  cacheMib: number;
  sharedMib: number;
  swapInMib: number;
  swapOutMib: number;
  majorFaults: number;
  minorFaults: number;
  psiSomeAvg10Percent: number;
  psiFullAvg10Percent: number;
  agentRssMib: number;
  domain: MemoryDomain;
  /** When the host received them (ms since the epoch). */
  receivedAtMs: number;
}

/** Automatic balloon policy settings of a VM. */
export interface PolicyView {
  balloonPolicy: 'manual' | 'auto';
  memoryMinMib: number;
  /** The largest balloon the automatic policy sets; null when not set (the 90 % rule alone). */
  balloonMaxMib: number | null;
  memoryWeight: number;
  memoryBufferPercent: number;
}

/** One VM, as `showvminfo NAME --json` prints it. */
export interface VmView extends PolicyView {
  name: string;
  /** `running` | `poweroff`: a contract scripts rely on (DESIGN.md), so a VM being started is still `poweroff` here, with `starting` set. */
  state: 'running' | 'poweroff';
  /** Present (true) while startvm is starting its guest or the guest waits for admission: a balloon target set now is kept and applied once it runs. */
  starting?: true;
  memoryMib: number;
  /** The balloon requested at every start (`modifyvm --guestmemoryballoon`). */
  defaultBalloonMib: number;
  pageFusion: boolean;
  /** Present while running. */
  balloon?: BalloonView;
  /** The agent's process id, as the guest reports it (while running). */
  pid?: number;
  /** What the VM holds of the pool: memoryMib - min(target, actual) (while running). */
  heldMib?: number;
  stats?: GuestStatsView;
  /** Page fusion: MiB of this VM's hinted pages that other guests hold too (while running). */
  sharableMib?: number;
  /** Page fusion: MiB the kernel has actually merged for this VM (while running). */
  sharedMib?: number;
  /** When the current session started (ms since the epoch, while running). */
  startedAtMs?: number;
  /** The guest the host owns for this VM (startvm or modifyvm --cgroup): its cgroup and log file. */
  managed?: ManagedGuestView;
}

/** The pool, as `showhostinfo --json` prints it under `pool`. */
export interface PoolView {
  sizeMib: number;
  heldMib: number;
  /** Sum of min(target, actual) over running VMs. */
  reclaimedMib: number;
  freeMib: number;
}

/** `showhostinfo --json`. */
export interface HostView {
  pool: PoolView;
  version: string;
  listen: string;
  dataDir: string;
  vmsRegistered: number;
  vmsRunning: number;
  /** Page fusion across guests (host-wide). */
  sharableMib: number;
  sharedMib: number;
  ksm: { available: boolean; running: boolean; detail: string };
  uptimeMs: number;
  /** How this host runs guests ('cgroup' | 'process') and reclaims ('physical' | 'budget'), with the reason (../guests). */
  guests?: GuestsHostView['guests'];
  guestsDetail?: string;
  reclaim?: GuestsHostView['reclaim'];
  cgroupParent?: string;
  poolCgroup?: boolean;
  remoteStartvm?: boolean;
}

/** The body of every error answer of the admin API. */
export interface ApiErrorView {
  error: { code: string; message: string };
}
