import { describe, expect, it } from 'vitest';
import { HeartbeatSweep, type HeartbeatMember } from './heartbeat.js';

describe('HeartbeatSweep', () => {
  it('runs one timer while it has sessions, and calls each with the same clock reading per sweep', () => {
    let nowMs = 5_000;
    const sweep = new HeartbeatSweep(2_000, () => nowMs);
    const beats: Array<[string, number]> = [];
    const member = (name: string): HeartbeatMember => ({ beat: (t) => beats.push([name, t]) });
    expect(sweep.running).toBe(false);
    const leaveA = sweep.add(member('a'));
    const leaveB = sweep.add(member('b'));
    expect(sweep.running).toBe(true);
    expect(sweep.size).toBe(2);
    sweep.sweep();
    nowMs = 6_000;
    leaveA();
    sweep.sweep();
    expect(beats).toEqual([
      ['a', 5_000],
      ['b', 5_000],
      ['b', 6_000],
    ]);
    leaveB();
    expect(sweep.running).toBe(false);
    expect(sweep.size).toBe(0);
  });

  it('lets a session leave while it is swept (a beat that ends its session), without skipping the others', () => {
    const sweep = new HeartbeatSweep(100, () => 0);
    const seen: string[] = [];
    let leaveFirst = (): void => {};
    leaveFirst = sweep.add({
      beat: () => {
        seen.push('first');
        leaveFirst();
      },
    });
    const leaveSecond = sweep.add({ beat: () => seen.push('second') });
    sweep.sweep();
    sweep.sweep();
    expect(seen).toEqual(['first', 'second', 'second']);
    leaveSecond();
    expect(sweep.running).toBe(false);
  });

  it('shares one sweep per interval across the process', () => {
    expect(HeartbeatSweep.forInterval(1_234)).toBe(HeartbeatSweep.forInterval(1_234));
    expect(HeartbeatSweep.forInterval(1_234)).not.toBe(HeartbeatSweep.forInterval(4_321));
  });
});
