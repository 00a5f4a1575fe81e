// What the service's tests share: a HostService on an in-memory registry with
// a silent logger, and the guest frames they feed it by hand.
import pino from 'pino';
import { bodies, type Hello, type MemoryStats } from '@memballoon/protocol';
import { Registry } from '../registry/registry.js';
import { HostService, type HostServiceOptions } from './host-service.js';

/** A silent logger for the service under test. */
export const testLogger = pino({ level: 'silent' });

/** A HostService on an in-memory registry; options override the defaults. */
export function testService(options: Partial<HostServiceOptions> & { poolSizeMib: number }): HostService {
  return new HostService({
    registry: new Registry(':memory:'),
    autoRegister: false,
    logger: testLogger,
    facts: { version: 't', listen: () => 'http://x', dataDir: ':memory:', ksm: () => ({ available: false, running: false, detail: '' }) },
    ...options,
  });
}

/** A guest's Hello for a VM of `totalMemoryMib`, holding no balloon. */
export function testHello(vmName: string, totalMemoryMib: number, credential = ''): Hello {
  return bodies.hello({
    vmName,
    credential,
    agentVersion: 't',
    facts: { pid: 42, totalMemoryMib, pageSizeBytes: 4096, chunkSizeMib: 1, capabilities: { pin: true, pageFusion: false, deflateOnPressure: true }, domain: 'process', hostname: '' },
    balloon: { actualMib: 0, lockedMib: 0, generation: 0, targetMib: 0 },
  }).value as Hello;
}

/** A guest's MemoryStats: `availableMib` free and available of `memoryMib`. */
export function testStats(memoryMib: number, availableMib: number): MemoryStats {
  const MIB = 1024 * 1024;
  return bodies.memoryStats({ totalBytes: memoryMib * MIB, freeBytes: availableMib * MIB, availableBytes: availableMib * MIB, domain: 'process' }).value as MemoryStats;
}
