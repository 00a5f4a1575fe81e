import { describe, expect, it } from 'vitest';
import type { DomainSource } from '../domain/source.js';
import { FloorGuard, pressureSlackMib } from './floor.js';

const MIB = 1024 * 1024;

function domainWith(availableMib: () => number): DomainSource & { reads: number } {
  const d = {
    kind: 'machine' as const,
    totalMib: 1024,
    reads: 0,
    availability: () => {
      d.reads++;
      return { totalBytes: 1024 * MIB, availableBytes: availableMib() * MIB };
    },
    stats: () => {
      throw new Error('not used');
    },
  };
  return d;
}

describe('FloorGuard', () => {
  it('the pressure band is an eighth of the floor, 8 to 64 MiB', () => {
    expect(pressureSlackMib(64)).toBe(8);
    expect(pressureSlackMib(200)).toBe(25);
    expect(pressureSlackMib(4096)).toBe(64);
  });

  it('budgets far from the floor with one reading, and reads afresh near it: stops at the floor as it is now', () => {
    let available = 1000;
    const d = domainWith(() => available);
    const guard = new FloorGuard(d, 100);
    let steps = 0;
    for (let allowed = guard.allowsMib(32); allowed > 0; allowed = guard.allowsMib(32)) {
      guard.spend(allowed);
      available -= allowed;
      // Something besides the balloon takes 50 MiB half-way.
      if (++steps === 10) available -= 50;
    }
    expect(available).toBe(100);
    // One reading for most of the way, then one per step near the floor.
    expect(d.reads).toBeLessThan(10);
  });

  it("a new target's first small step goes on the last reading when it left a wide margin; the next step reads afresh", () => {
    let available = 1000;
    const d = domainWith(() => available);
    const guard = new FloorGuard(d, 100);
    expect(guard.allowsMib(32)).toBe(32);
    expect(d.reads).toBe(1);
    guard.reset();
    expect(guard.allowsMib(1)).toBe(1);
    expect(d.reads).toBe(1);
    guard.spend(1);
    available = 150;
    expect(guard.allowsMib(32)).toBe(32);
    expect(d.reads).toBe(2);
    // Near the floor by the last reading: even the first step reads.
    guard.spend(32);
    available -= 32;
    guard.reset();
    expect(guard.allowsMib(1)).toBe(1);
    expect(d.reads).toBe(3);
  });

  it('asks for a deflate only below the band, and back to the floor', () => {
    let available = 60;
    const guard = new FloorGuard(
      domainWith(() => available),
      64,
    );
    expect(guard.pressureCapMib(100)).toBeNull();
    available = 56;
    expect(guard.pressureCapMib(100)).toBeNull();
    available = 55;
    expect(guard.pressureCapMib(100)).toBe(100 - 9);
    expect(guard.pressureCapMib(0)).toBeNull();
  });

  it('without a domain there is no floor; 0 means the default', () => {
    expect(new FloorGuard(null, 0).allowsMib(500)).toBe(500);
    expect(
      new FloorGuard(
        domainWith(() => 500),
        0,
      ).floorMib,
    ).toBe(64);
  });
});
