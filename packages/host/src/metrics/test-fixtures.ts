// Synthetic host snapshots for the metrics and dashboard unit tests.
import type { BalloonView, HostView, VmView } from '../service/views.js';
import type { MetricsSnapshot } from './query.js';

/** A running VM view with a balloon and guest statistics; `over` replaces fields. */
export function runningVm(
  name: string,
  memoryMib: number,
  balloon: { targetMib: number; actualMib: number } & Partial<BalloonView>,
  over: Partial<VmView> = {},
): VmView {
  const reclaimed = Math.min(balloon.targetMib, balloon.actualMib);
  return {
    name,
    state: 'running',
    memoryMib,
    defaultBalloonMib: 0,
    pageFusion: true,
    balloonPolicy: 'manual',
    memoryMinMib: 0,
    balloonMaxMib: null,
    memoryWeight: 1,
    memoryBufferPercent: 10,
    balloon: { lockedMib: balloon.actualMib, handedOffMib: 0, state: 'steady', reason: 'none', lock: 'locked', generation: 1, ...balloon },
    pid: 4242,
    heldMib: memoryMib - reclaimed,
    stats: {
      totalMib: memoryMib,
      freeMib: memoryMib / 4,
      availableMib: memoryMib / 2,
      cacheMib: 64,
      sharedMib: 3,
      swapInMib: 0,
      swapOutMib: 0,
      majorFaults: 1,
      minorFaults: 100,
      psiSomeAvg10Percent: 12.5,
      psiFullAvg10Percent: 2.5,
      agentRssMib: 40,
      domain: 'process',
      receivedAtMs: 1_700_000_000_000,
    },
    sharableMib: 8,
    sharedMib: 5,
    startedAtMs: 1_700_000_000_000,
    ...over,
  };
}

/** A powered-off VM view. */
export function poweredOffVm(name: string, memoryMib: number): VmView {
  return {
    name,
    state: 'poweroff',
    memoryMib,
    defaultBalloonMib: 128,
    pageFusion: false,
    balloonPolicy: 'manual',
    memoryMinMib: 0,
    balloonMaxMib: null,
    memoryWeight: 1,
    memoryBufferPercent: 10,
  };
}

/** A snapshot whose pool figures add up from its VMs. */
export function snapshotOf(vms: VmView[], poolSizeMib = 1536): MetricsSnapshot {
  const running = vms.filter((v) => v.state === 'running');
  const heldMib = running.reduce((s, v) => s + (v.heldMib ?? 0), 0);
  const reclaimedMib = running.reduce((s, v) => s + Math.min(v.balloon?.targetMib ?? 0, v.balloon?.actualMib ?? 0), 0);
  const host: HostView = {
    pool: { sizeMib: poolSizeMib, heldMib, reclaimedMib, freeMib: poolSizeMib - heldMib },
    version: '0.1.0',
    listen: '127.0.0.1:7450',
    dataDir: '/tmp/memballoon-test',
    vmsRegistered: vms.length,
    vmsRunning: running.length,
    sharableMib: 16,
    sharedMib: 10,
    ksm: { available: true, running: true, detail: 'ksm running' },
    uptimeMs: 12_345,
    reclaim: 'budget',
  };
  return { host, vms };
}

/** The demo's three guests plus a powered-off one, in a 1536 MiB pool. */
export function demoSnapshot(): MetricsSnapshot {
  return snapshotOf([
    runningVm('vm-small', 512, { targetMib: 0, actualMib: 0 }),
    runningVm('vm-medium', 768, { targetMib: 256, actualMib: 256 }),
    runningVm('vm-large', 1024, { targetMib: 600, actualMib: 590 }),
    poweredOffVm('vm-off', 2048),
  ]);
}
