// Human-readable output of balloonctl, in VBoxManage's "Key: value" manner.
// Scripts should use --json; these lines are for people.
import type { HostView, VmView } from '../service/views.js';
import type { LockState, ShortfallReason } from '@memballoon/protocol';

const pad = (key: string) => `${key}:`.padEnd(26);

/** One line per VM for `list vms`. */
export function formatVmLine(vm: VmView): string {
  const balloon = vm.balloon ? `, balloon ${vm.balloon.actualMib}/${vm.balloon.targetMib} MiB` : '';
  return `"${vm.name}" (${vm.memoryMib} MiB, ${vm.state}${balloon})`;
}

/** `showvminfo NAME`. */
export function formatVm(vm: VmView): string {
  const lines = [
    `${pad('Name')}${vm.name}`,
    `${pad('State')}${vm.state}`,
    `${pad('Memory size')}${vm.memoryMib} MiB`,
    `${pad('Default balloon')}${vm.defaultBalloonMib} MiB`,
    `${pad('Page fusion')}${vm.pageFusion ? 'on' : 'off'}`,
    `${pad('Balloon policy')}${vm.balloonPolicy}`,
    `${pad('Memory min')}${vm.memoryMinMib} MiB`,
    `${pad('Balloon max')}${vm.balloonMaxMib === null ? 'not set (the 90 % rule alone)' : `${vm.balloonMaxMib} MiB`}`,
    `${pad('Memory weight')}${vm.memoryWeight}`,
    `${pad('Memory buffer')}${vm.memoryBufferPercent} %`,
  ];
  if (vm.balloon) {
    const b = vm.balloon;
    lines.push(
      `${pad('Balloon target')}${b.targetMib} MiB (generation ${b.generation})`,
      `${pad('Balloon actual')}${b.actualMib} MiB${pinnedText(b.actualMib - b.handedOffMib, b.lockedMib, b.lock)}${b.handedOffMib > 0 ? ` (handed off ${b.handedOffMib} MiB)` : ''}`,
      `${pad('Balloon state')}${b.state}${b.reason !== 'none' ? ` (${reasonText(b.reason)})` : ''}`,
      `${pad('Held of pool')}${vm.heldMib ?? 0} MiB`,
      `${pad('Agent pid')}${vm.pid ?? '?'}`,
    );
  }
  if (vm.managed) {
    const m = vm.managed;
    lines.push(
      `${pad('Managed by')}${m.managedBy === 'startvm' ? 'this host (startvm)' : 'another tool (adopted cgroup)'}`,
      `${pad('Memory cgroup')}${m.cgroup ?? '(none: a plain process tree)'}`,
    );
    if (m.logFile !== undefined) lines.push(`${pad('Log file')}${m.logFile}`);
    if (m.command !== undefined) lines.push(`${pad('Command')}${m.command.join(' ')}${m.user !== undefined ? ` (as ${m.user})` : ''}`);
  }
  if (vm.sharableMib !== undefined || vm.sharedMib !== undefined) {
    lines.push(`${pad('Page fusion sharable')}${mib1(vm.sharableMib ?? 0)} MiB`, `${pad('Page fusion shared')}${mib1(vm.sharedMib ?? 0)} MiB`);
  }
  if (vm.stats) {
    const s = vm.stats;
    lines.push(
      `${pad('Guest available')}${s.availableMib} MiB`,
      `${pad('Guest free')}${s.freeMib} MiB`,
      `${pad('Guest cache')}${s.cacheMib} MiB`,
      `${pad('Guest pressure')}${s.psiSomeAvg10Percent.toFixed(1)} % some, ${s.psiFullAvg10Percent.toFixed(1)} % full`,
    );
  }
  return lines.join('\n');
}

/** `showhostinfo`. */
export function formatHost(h: HostView): string {
  return [
    `${pad('Host version')}${h.version}`,
    `${pad('Listening on')}${h.listen}`,
    `${pad('Data directory')}${h.dataDir}`,
    `${pad('Pool size')}${h.pool.sizeMib} MiB`,
    `${pad('Pool held')}${h.pool.heldMib} MiB`,
    `${pad('Pool reclaimed')}${h.pool.reclaimedMib} MiB`,
    `${pad('Pool free')}${h.pool.freeMib} MiB`,
    `${pad('Reclaim')}${h.reclaim === 'physical' ? 'physical (balloons handed off to cgroup limits)' : 'budget (the pool is bookkeeping: balloons stay in the guests)'}`,
    `${pad('VMs registered')}${h.vmsRegistered}`,
    `${pad('VMs running')}${h.vmsRunning}`,
    `${pad('Page fusion sharable')}${mib1(h.sharableMib)} MiB`,
    `${pad('Page fusion shared')}${mib1(h.sharedMib)} MiB`,
    `${pad('Page fusion (KSM)')}${h.ksm.detail}`,
    `${pad('Uptime')}${Math.round(h.uptimeMs / 1000)} s`,
    ...(h.guests !== undefined
      ? [
          `${pad('Guests')}${h.guests} (${h.guestsDetail ?? ''})`,
          `${pad('Reclaim')}${h.reclaim}${h.poolCgroup ? " (the pool is the parent cgroup's limit)" : ''}`,
          ...(h.cgroupParent !== undefined ? [`${pad('Cgroup parent')}${h.cgroupParent}`] : []),
        ]
      : []),
  ].join('\n');
}

/** How much of the balloon is pinned, said once: nothing when all of it is, else how much and why not more. */
export function pinnedText(actualMib: number, lockedMib: number, lock: LockState): string {
  if (actualMib === 0 || (lock === 'locked' && lockedMib >= actualMib)) return '';
  const why: Record<LockState, string> = {
    unspecified: 'the guest has not said why',
    locked: 'the rest is being pinned',
    not_permitted: 'the guest may not pin memory (needs root or CAP_IPC_LOCK)',
    unsupported: 'the guest cannot pin memory',
    disabled: 'pinning is off (--no-lock)',
  };
  return ` (${lockedMib === 0 ? 'none' : `${lockedMib} MiB`} pinned: ${why[lock]})`;
}

/**
 * `showvminfo NAME --machinereadable`: VBoxManage's key="value" lines. Keys
 * VBoxManage has keep its names (name, VMState, memory, GuestMemoryBalloon,
 * pagefusion); ours are the --json field names, flattened, with their units.
 * Numbers are bare and strings quoted, as VBoxManage prints them, so a shell
 * can `eval` the output; a setting that is not set is left out.
 */
export function formatVmMachineReadable(vm: VmView): string {
  const pairs: Array<[string, string | number | undefined]> = [
    ['name', vm.name],
    ['VMState', vm.state],
    ['memory', vm.memoryMib],
    ['GuestMemoryBalloon', vm.defaultBalloonMib],
    ['pagefusion', vm.pageFusion ? 'on' : 'off'],
    ['balloonPolicy', vm.balloonPolicy],
    ['memoryMinMib', vm.memoryMinMib],
    ['balloonMaxMib', vm.balloonMaxMib ?? undefined],
    ['memoryWeight', vm.memoryWeight],
    ['memoryBufferPercent', vm.memoryBufferPercent],
  ];
  const b = vm.balloon;
  if (b) {
    pairs.push(
      ['balloonTargetMib', b.targetMib],
      ['balloonActualMib', b.actualMib],
      ['balloonLockedMib', b.lockedMib],
      ['balloonState', b.state],
      ['balloonReason', b.reason],
      ['balloonLock', b.lock],
      ['balloonGeneration', b.generation],
      ['heldMib', vm.heldMib],
      ['pid', vm.pid],
      ['sharableMib', vm.sharableMib === undefined ? undefined : mib1(vm.sharableMib)],
      ['sharedMib', vm.sharedMib === undefined ? undefined : mib1(vm.sharedMib)],
      ['startedAtMs', vm.startedAtMs],
    );
  }
  const s = vm.stats;
  if (s) {
    pairs.push(
      ['guestTotalMib', s.totalMib],
      ['guestFreeMib', s.freeMib],
      ['guestAvailableMib', s.availableMib],
      ['guestCacheMib', s.cacheMib],
      ['guestPsiSomeAvg10Percent', s.psiSomeAvg10Percent],
      ['guestPsiFullAvg10Percent', s.psiFullAvg10Percent],
      ['guestDomain', s.domain],
      ['statsReceivedAtMs', s.receivedAtMs],
    );
  }
  return pairs
    .filter((p): p is [string, string | number] => p[1] !== undefined)
    .map(([key, value]) => `${key}=${typeof value === 'number' ? String(value) : quote(value)}`)
    .join('\n');
}

/** A string as VBoxManage quotes it: in double quotes, with \\, \" and \n escaped. */
function quote(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

// Page fusion figures come in pages (1/256 MiB): one decimal is enough.
const mib1 = (mib: number): string => String(Math.round(mib * 10) / 10);

/** Why a balloon stopped short, in words. */
export function reasonText(reason: ShortfallReason): string {
  switch (reason) {
    case 'out_of_memory':
      return 'the guest could not allocate more memory';
    case 'guest_floor':
      return "inflating further would cross the guest's free-memory floor";
    case 'guest_pressure':
      return 'the guest ran short of memory and deflated by itself';
    case 'not_permitted':
      return "the guest's operating system refused";
    case 'cancelled':
      return 'a newer target replaced it';
    default:
      return 'no reason given';
  }
}

/** A progress bar of `width` cells. */
export function progressBar(actualMib: number, targetMib: number, startMib: number, width = 30): string {
  const span = Math.abs(targetMib - startMib);
  const done = span === 0 ? 1 : Math.min(1, Math.max(0, 1 - Math.abs(targetMib - actualMib) / span));
  const cells = Math.round(done * width);
  return `[${'#'.repeat(cells)}${'.'.repeat(width - cells)}] ${actualMib}/${targetMib} MiB`;
}
