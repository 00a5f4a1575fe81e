import { describe, expect, it } from 'vitest';
import type { HostView, VmView } from '../service/views.js';
import { formatHost, formatVm } from './format.js';

const host: HostView = {
  pool: { sizeMib: 1024, heldMib: 0, reclaimedMib: 0, freeMib: 1024 },
  version: '0.1.0',
  listen: 'http://127.0.0.1:1',
  dataDir: '/d',
  vmsRegistered: 0,
  vmsRunning: 0,
  sharableMib: 0,
  sharedMib: 0,
  ksm: { available: false, running: false, detail: 'off' },
  uptimeMs: 0,
};
const vm: VmView = {
  name: 'a',
  state: 'running',
  memoryMib: 256,
  defaultBalloonMib: 0,
  pageFusion: false,
  balloonPolicy: 'manual',
  memoryMinMib: 0,
  balloonMaxMib: 0,
  memoryWeight: 100,
  memoryBufferPercent: 20,
};

describe('balloonctl output of managed guests', () => {
  it('showhostinfo says how guests run and memory is reclaimed, with the reason', () => {
    const text = formatHost({
      ...host,
      guests: 'process',
      guestsDetail: 'no memory controller: no cgroup file system is mounted',
      reclaim: 'budget',
      poolCgroup: false,
    });
    expect(text).toMatch(/^Guests: +process \(no memory controller: no cgroup file system is mounted\)$/m);
    expect(text).toMatch(/^Reclaim: +budget$/m);
    expect(
      formatHost({ ...host, guests: 'cgroup', guestsDetail: 'v1', reclaim: 'physical', poolCgroup: true, cgroupParent: '/sys/fs/cgroup/memory/memballoon' }),
    ).toMatch(/^Cgroup parent: +\/sys\/fs\/cgroup\/memory\/memballoon$/m);
    expect(formatHost(host)).not.toMatch(/Guests/);
  });

  it('showvminfo names the cgroup and the log file', () => {
    const text = formatVm({
      ...vm,
      managed: { managedBy: 'startvm', cgroup: '/cg/a', logFile: '/d/logs/a.log', agentPid: 9, command: ['sleep', '60'], user: 'nobody' },
    });
    expect(text).toMatch(/^Log file: +\/d\/logs\/a\.log$/m);
    expect(text).toMatch(/^Memory cgroup: +\/cg\/a$/m);
    expect(text).toMatch(/^Command: +sleep 60 \(as nobody\)$/m);
    expect(formatVm({ ...vm, managed: { managedBy: 'startvm', cgroup: null } })).toMatch(/a plain process tree/);
  });
});
