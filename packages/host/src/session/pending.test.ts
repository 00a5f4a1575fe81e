import { describe, expect, it } from 'vitest';
import { PendingConnections } from './pending.js';

describe('PendingConnections', () => {
  it('at the cap evicts the oldest connection of the address holding the most, never a newcomer', () => {
    const p = new PendingConnections(4);
    const evicted: string[] = [];
    const add = (address: string, id: string) => p.add(address, () => evicted.push(id));
    add('flood', 'f1');
    add('flood', 'f2');
    add('guest', 'g1');
    add('flood', 'f3');
    expect(evicted).toEqual([]);
    add('flood', 'f4');
    expect(evicted).toEqual(['f1']);
    add('other', 'o1');
    expect(evicted).toEqual(['f1', 'f2']);
    expect(p.size).toBe(4);
    expect(p.countOf('guest')).toBe(1);
    expect(p.countOf('flood')).toBe(2);
  });

  it('a flood from the guest address evicts its own older strangers first', () => {
    const p = new PendingConnections(3);
    const evicted: string[] = [];
    for (let i = 0; i < 3; i++) p.add('lo', () => evicted.push(`f${i}`));
    p.add('lo', () => evicted.push('guest'));
    p.add('lo', () => evicted.push('f3'));
    expect(evicted).toEqual(['f0', 'f1']);
  });

  it('release is idempotent and frees a place; releasing an evicted one changes nothing', () => {
    const p = new PendingConnections(2);
    const r1 = p.add('a', () => {});
    const r2 = p.add('a', () => {});
    r2();
    r2();
    expect(p.size).toBe(1);
    p.add('b', () => {});
    let evicted = false;
    p.add('a', () => {}); // a holds 2 of 3: its oldest (r1) goes
    const r4 = p.add('c', () => (evicted = true));
    expect(p.size).toBe(2);
    r1();
    expect(p.size).toBe(2);
    expect(evicted).toBe(false);
    r4();
    expect(p.size).toBe(1);
  });
});
