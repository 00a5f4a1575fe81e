// What the launcher adds to showhostinfo and showvminfo, and the narrow face
// of the host service it needs. Field names are a contract (camelCase, --json).
import type { VmView } from '../service/views.js';
import type { MemoryCgroup } from '../cgroup/index.js';

/** showhostinfo: how this host runs guests, and why. */
export interface GuestsHostView {
  /** 'cgroup': each guest startvm runs gets a memory cgroup; 'process': plain process trees. */
  guests: 'cgroup' | 'process';
  /** One line: which cgroup interface, or why there is none. */
  guestsDetail: string;
  /** 'physical': managed guests' limits can make reclaimed memory free in the kernel; 'budget': the pool is only a number. */
  reclaim: 'physical' | 'budget';
  /** The host's parent cgroup (cgroup mode). */
  cgroupParent?: string;
  /** Whether the parent's hard limit is the pool (`--pool-cgroup`). */
  poolCgroup: boolean;
  /** Whether startvm is refused unless it comes over loopback (`--no-remote-startvm`). */
  remoteStartvm: boolean;
}

/** showvminfo: the guest the host owns for this VM (started or adopted). */
export interface ManagedGuestView {
  /** 'startvm': started by the host; 'adopted': `modifyvm --cgroup`. */
  managedBy: 'startvm' | 'adopted';
  /** The VM's memory cgroup directory; null in process mode. */
  cgroup: string | null;
  /** Where the workload's stdout and stderr go (startvm). */
  logFile?: string;
  /** The agent's process id as the host started it (startvm). */
  agentPid?: number;
  command?: string[];
  user?: string;
}

/** The launcher as the host service sees it (HostService's `guests` collaborator). */
export interface GuestsCollaborator {
  /** The memory cgroup of a running managed VM, else null (the hand-off uses it). */
  cgroupOf(name: string): MemoryCgroup | null;
  /**
   * Sets the limits of VMs' cgroups under the host's parent (bytes, null: no
   * limit) in an order that never lets their sum exceed the parent's (lowers
   * first); rejects with CgroupError over_parent, changing nothing, if the
   * wanted limits do not fit, and limit_below_usage where the kernel would
   * have to reclaim. The hand-off lowers and raises guests through it.
   */
  setLimits(wanted: ReadonlyMap<string, number | null>): Promise<void>;
  /** Whether startvm is starting this VM's guest (spawned, not yet admitted). */
  isStarting(name: string): boolean;
  /** Whether the VM's cgroup still carries a limit the host set though the VM is not running (a startvm cgroup not yet removed, an adopted one whose own limit is not back): the pool counts the VM's memory for it. */
  holdsLimit(name: string): boolean;
  /** A VM's session ended (it is powered off unless its agent reconnects); `handOffStopped` resolves once the hand-off wrote its last limit. */
  sessionEnded(name: string, handOffStopped: Promise<void>): void;
  /** unregistervm: drops what the host keeps for the VM (an adopted cgroup); vm_running while its guest is started or starting. */
  forget(name: string): void;
  /** Whether a Hello's credential is the launch token the host gave this VM's agent. */
  acceptsCredential(name: string, credential: string): boolean;
  hostView(): GuestsHostView;
  vmView(name: string): ManagedGuestView | undefined;
}

/** What the launcher needs of the host service. */
export interface GuestHostService {
  vmView(name: string): VmView;
  isRunning(name: string): boolean;
  /** The newest pool_exhausted refusal of the VM's guest (a new object per refusal), or undefined. */
  poolRefusal(name: string): { message: string } | undefined;
  /** startvm ended (the guest was admitted, or the start failed). */
  startEnded(name: string): void;
  /** A startvm guest is gone with its cgroup, or an adopted cgroup has its own limit back: its limit no longer holds room under the pool. */
  guestGone(name: string): void;
  /** MiB a VM being started may take as its cgroup's first limit: the room under the pool for limits (the hand-off's counted sum: a raise counts before its write), not counting the VM itself. */
  startLimitRoomMib(name: string): number;
  /** Throws pool_exhausted when the pool could never fund the VM's start (checked before anything is spawned). */
  assertCanStart(name: string): void;
  subscribe(listener: () => void): () => void;
}
