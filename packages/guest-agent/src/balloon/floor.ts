// The guest's free-memory floor: how far the balloon may inflate before the
// domain's available memory would fall below it, and how far it must deflate
// when the guest's own use has pushed availability below it (pressure).
// Pure arithmetic over a DomainSource: no timers, no balloon.
import { defaultFloorMib, type DomainSource } from '../domain/source.js';
import { BYTES_PER_MIB } from '@memballoon/protocol';

/**
 * Available bytes of a domain reading as if its limit were the one the
 * balloon implies (the domain's memory minus what is handed off), undoing
 * whatever limit the kernel shows now. A process or machine domain does not
 * see the host's limit at all, and a cgroup's limit lags a round trip after a
 * deflate of handed-off MiB: without this, the first would overestimate what
 * the guest has and the second would deflate again and again until the host
 * caught up. The floor checks and the statistics sent to the host use it.
 */
export function availableUnderHandOffBytes(reading: { totalBytes: number; availableBytes: number }, domainTotalMib: number, handedOffMib: number): number {
  // Even with nothing handed off yet: the host lowers the limit a moment
  // before the agent releases (its first batch, maybe while the balloon still
  // inflates), and that moment must not look like pressure.
  const limitLoweredBytes = Math.max(0, domainTotalMib * BYTES_PER_MIB - reading.totalBytes);
  return Math.max(0, reading.availableBytes + limitLoweredBytes - handedOffMib * BYTES_PER_MIB);
}

/** Within this many MiB of the floor (by the last reading), every inflate step reads the domain afresh. */
const NEAR_FLOOR_MIB = 128;
/** Largest first step of a new target taken on the last reading (one default chunk is 1 MiB). */
const STALE_FIRST_STEP_MAX_MIB = 4;

/**
 * How far below the floor availability may dip before the balloon deflates
 * by itself: an eighth of the floor, 8 to 64 MiB. Without this band a
 * balloon parked at its floor gave up memory at every MiB of noise (the
 * agent's own heap, page cache, a status frame), ending `guest_pressure` a
 * few MiB under a target it had reached, and deflating by 1 MiB every few
 * seconds after.
 */
export function pressureSlackMib(floorMib: number): number {
  return Math.min(64, Math.max(8, Math.ceil(floorMib / 8)));
}

/** The floor of one balloon, and the budget of one inflate against it. */
export class FloorGuard {
  private floorMibValue: number;
  /** MiB the last reading lets the balloon take before it must look again. */
  private budgetMib = 0;
  /** A new target came since the last reading: the budget is from before it. */
  private stale = false;

  constructor(
    private readonly domain: DomainSource | null,
    floorMib: number,
    /** MiB of the balloon handed off to the host's limit (the chunk stack's figure). */
    private readonly handedOffMib: () => number = () => 0,
  ) {
    this.floorMibValue = this.resolve(floorMib);
  }

  /** What counts as available, in MiB (see availableUnderHandOffBytes). */
  private availableMib(domain: DomainSource): number {
    return Math.floor(availableUnderHandOffBytes(domain.availability(), domain.totalMib, this.handedOffMib()) / BYTES_PER_MIB);
  }

  /** The floor in MiB (0: none). */
  get floorMib(): number {
    return this.floorMibValue;
  }

  /** Sets the floor; 0 means the default (max(64 MiB, 5 % of the domain); none without a domain). */
  setFloor(floorMib: number): void {
    this.floorMibValue = this.resolve(floorMib);
    this.budgetMib = 0;
    this.stale = false;
  }

  /**
   * A new target: the budget is from before it. Its first chunk may still
   * go from that budget when it left a wide margin (the reaction the host
   * sees does not wait for a /proc reading: up to ms for a process tree);
   * every later step reads afresh.
   */
  reset(): void {
    this.stale = true;
  }

  /**
   * How many of `wantMib` the floor lets the balloon take now. Our own
   * inflation lowers availability MiB for MiB, so one reading stays good for
   * a budget: no /proc read per step far from the floor (the process
   * domain's reading walks all of /proc). Near it every step reads afresh,
   * so the balloon stops at the floor as it is now, not as it was when the
   * inflate began (the agent's own memory moves meanwhile).
   */
  allowsMib(wantMib: number): number {
    if (!this.domain || this.floorMibValue <= 0) return wantMib;
    if (this.stale) {
      this.stale = false;
      if (wantMib <= STALE_FIRST_STEP_MAX_MIB && this.budgetMib - wantMib >= NEAR_FLOOR_MIB) {
        // Far from the floor by the last reading: one small step on it, then read.
        this.budgetMib = wantMib;
        return wantMib;
      }
      this.budgetMib = 0;
    }
    if (this.budgetMib - wantMib < NEAR_FLOOR_MIB) {
      this.budgetMib = Math.max(0, this.availableMib(this.domain) - this.floorMibValue);
    }
    return Math.min(wantMib, this.budgetMib);
  }

  /** The balloon took `mib` MiB of the budget. */
  spend(mib: number): void {
    this.budgetMib -= mib;
  }

  /**
   * Under pressure (availability more than the band below the floor), the
   * size the balloon must deflate to, which brings availability back to the
   * floor; null when the guest is within its band.
   */
  pressureCapMib(actualMib: number): number | null {
    if (!this.domain || this.floorMibValue <= 0 || actualMib === 0) return null;
    const availableMib = this.availableMib(this.domain);
    if (availableMib >= this.floorMibValue - pressureSlackMib(this.floorMibValue)) return null;
    return Math.max(0, actualMib - (this.floorMibValue - availableMib));
  }

  private resolve(floorMib: number): number {
    return floorMib || (this.domain ? defaultFloorMib(this.domain.totalMib) : 0);
  }
}
