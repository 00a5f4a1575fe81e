// MemoryStats from a domain reading plus the agent's own footprint.
import type { MemoryStats } from '@memballoon/protocol';
import type { DomainStats } from './domain/source.js';

/** Builds the protocol's MemoryStats from a domain reading and the agent's RSS. */
export function toMemoryStats(d: DomainStats, agentRssBytes: number): MemoryStats {
  return {
    totalBytes: d.totalBytes,
    freeBytes: d.freeBytes,
    availableBytes: d.availableBytes,
    diskCachesBytes: d.diskCachesBytes,
    swapInBytes: d.swapInBytes,
    swapOutBytes: d.swapOutBytes,
    majorFaults: d.majorFaults,
    minorFaults: d.minorFaults,
    psiSomeAvg10Percent: clampPercent(d.psiSomeAvg10Percent),
    psiFullAvg10Percent: clampPercent(d.psiFullAvg10Percent),
    agentRssBytes,
    sharedBytes: d.sharedBytes,
    domain: d.domain,
  };
}

function clampPercent(n: number): number {
  return Number.isFinite(n) ? Math.min(100, Math.max(0, n)) : 0;
}
