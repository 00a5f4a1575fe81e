// What the agent needs to know about its guest's memory domain. The balloon
// engine asks only for totals and availability (to keep the floor); the
// statistics loop asks for the full set.
import type { MemoryDomain, MemoryStats } from '@memballoon/protocol';

/** The kinds of domain the agent can measure (the protocol's, minus 'unspecified'). */
export type DomainKind = Exclude<MemoryDomain, 'unspecified'>;

/** Availability of a domain's memory right now, in bytes. */
export interface DomainAvailability {
  totalBytes: number;
  availableBytes: number;
}

/**
 * The full statistics of a domain: the protocol's MemoryStats set, minus the
 * agent's own RSS (the agent adds it), with sharedBytes what the kernel has
 * merged (KSM).
 */
export type DomainStats = Omit<MemoryStats, 'agentRssBytes' | 'domain'> & { domain: DomainKind };

/** A memory domain: where the guest's memory is measured. Reads must not throw. */
export interface DomainSource {
  readonly kind: DomainKind;
  /** The domain's memory size (Hello.facts.totalMemoryMib), fixed for the agent's life. */
  readonly totalMib: number;
  /** Cheap reading for the floor checks. */
  availability(): DomainAvailability;
  /** Full reading for MemoryStats. */
  stats(): DomainStats;
  /**
   * Told by the balloon engine of the memory its balloon holds, so that a
   * domain whose processes do not include the balloon's (an agent embedded
   * in a test, squeezing a child it names) counts the balloon as used.
   * Optional: a domain that sees every process's memory (machine, cgroup of
   * the agent) needs no telling.
   */
  countBalloon?(residentBytes: () => number): void;
}

/** The default floor: the larger of 64 MiB and 5 % of the domain. */
export function defaultFloorMib(domainTotalMib: number): number {
  return Math.max(64, Math.ceil(domainTotalMib * 0.05));
}
