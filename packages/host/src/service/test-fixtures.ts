// What the service's tests share: a HostService on an in-memory registry with
// a silent logger, and the guest frames they feed it by hand.
import pino from 'pino';
import { BYTES_PER_MIB, bodies, type Hello, type MemoryStats } from '@memballoon/protocol';
import { Registry } from '../registry/registry.js';
import { HostService, type HostServiceOptions } from './host-service.js';
import type { Clock } from './reclaim.js';

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
    facts: {
      pid: 42,
      totalMemoryMib,
      pageSizeBytes: 4096,
      chunkSizeMib: 1,
      capabilities: { pin: true, pageFusion: false, deflateOnPressure: true },
      domain: 'process',
      hostname: '',
    },
    balloon: { actualMib: 0, lockedMib: 0, generation: 0, targetMib: 0 },
  }).value as Hello;
}

/** A guest's MemoryStats: `availableMib` free and available of `memoryMib`. */
export function testStats(memoryMib: number, availableMib: number): MemoryStats {
  return bodies.memoryStats({
    totalBytes: memoryMib * BYTES_PER_MIB,
    freeBytes: availableMib * BYTES_PER_MIB,
    availableBytes: availableMib * BYTES_PER_MIB,
    domain: 'process',
  }).value as MemoryStats;
}

/** A clock that moves only when the test says so; timers fire in order of their due time. */
export class FakeClock implements Clock {
  private now = 1_000_000;
  private readonly timers = new Set<{ dueMs: number; fn: () => void }>();

  nowMs(): number {
    return this.now;
  }

  after(delayMs: number, fn: () => void): () => void {
    const timer = { dueMs: this.now + delayMs, fn };
    this.timers.add(timer);
    return () => this.timers.delete(timer);
  }

  /** Moves time on by `ms`, firing every timer due by then. */
  advance(ms: number): void {
    const endMs = this.now + ms;
    for (;;) {
      const due = [...this.timers].filter((t) => t.dueMs <= endMs).sort((a, b) => a.dueMs - b.dueMs)[0];
      if (!due) break;
      this.timers.delete(due);
      this.now = due.dueMs;
      due.fn();
    }
    this.now = endMs;
  }
}
