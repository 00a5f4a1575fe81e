// Human-readable output of balloonctl, in VBoxManage's "Key: value" manner.
// Scripts should use --json; these lines are for people.
import type { HostView, VmView } from '../service/views.js';
import type { ShortfallReason } from '@memballoon/protocol';

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
    `${pad('Balloon max')}${vm.balloonMaxMib === 0 ? '(90 % rule)' : `${vm.balloonMaxMib} MiB`}`,
    `${pad('Memory weight')}${vm.memoryWeight}`,
    `${pad('Memory buffer')}${vm.memoryBufferPercent} %`,
  ];
  if (vm.balloon) {
    const b = vm.balloon;
    lines.push(
      `${pad('Balloon target')}${b.targetMib} MiB (generation ${b.generation})`,
      `${pad('Balloon actual')}${b.actualMib} MiB (locked ${b.lockedMib} MiB, ${b.lock}${b.handedOffMib > 0 ? `; handed off ${b.handedOffMib} MiB` : ''})`,
      `${pad('Balloon state')}${b.state}${b.reason !== 'none' ? ` (${reasonText(b.reason)})` : ''}`,
      `${pad('Held of pool')}${vm.heldMib ?? 0} MiB`,
      `${pad('Agent pid')}${vm.pid ?? '?'}`,
    );
  }
  if (vm.managed) {
    const m = vm.managed;
    lines.push(`${pad('Managed by')}${m.managedBy === 'startvm' ? 'this host (startvm)' : 'another tool (adopted cgroup)'}`, `${pad('Memory cgroup')}${m.cgroup ?? '(none: a plain process tree)'}`);
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
          `${pad('Reclaim')}${h.reclaim}${h.poolCgroup ? ' (the pool is the parent cgroup\'s limit)' : ''}`,
          ...(h.cgroupParent !== undefined ? [`${pad('Cgroup parent')}${h.cgroupParent}`] : []),
        ]
      : []),
  ].join('\n');
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
