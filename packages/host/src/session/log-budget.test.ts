import { captureLogger } from '@memballoon/e2e/capture-log';
import { describe, expect, it, vi } from 'vitest';
import { LogBudget } from './log-budget.js';

describe('LogBudget', () => {
  it('shares one budget across every wrapped logger and its children, then says how many lines it dropped', () => {
    let nowMs = 0;
    const { logger, lines } = captureLogger();
    const budget = new LogBudget(2, 5, logger, () => nowMs);
    const a = budget.wrap(logger.child({ remote: 'a' }));
    const b = budget
      .wrap(logger.child({ remote: 'b' }))
      .child({ vm: 'x' })
      .child({ session: 's' });
    for (let i = 0; i < 100; i++) (i % 2 ? a : b).warn({ i }, 'guest line');
    expect(lines()).toHaveLength(5);
    expect(lines()[4]).toMatchObject({ vm: 'x', session: 's', remote: 'b' });
    expect(budget.suppressed).toBe(95);
    nowMs = 1000; // two more lines' worth
    a.error('again');
    expect(lines().map((l) => l.msg)).toEqual([
      'guest line',
      'guest line',
      'guest line',
      'guest line',
      'guest line',
      '95 guest-triggered log lines were dropped (over the host-wide log budget)',
      'again',
    ]);
    expect(lines()[5]).toMatchObject({ suppressedLines: 95 });
    expect(lines()[5]).not.toHaveProperty('remote');
    expect(budget.suppressed).toBe(0);
  });

  it('charges nothing for a level that is off, and passes everything else through', () => {
    const { logger, lines } = captureLogger('warn');
    const budget = new LogBudget(1, 1, logger, () => 0);
    const l = budget.wrap(logger);
    for (let i = 0; i < 50; i++) l.debug('not written');
    l.info('not written either');
    l.warn('written');
    expect(lines().map((x) => x.msg)).toEqual(['written']);
    expect(l.isLevelEnabled('warn')).toBe(true);
    expect(l.level).toBe('warn');
  });

  it('follows a change of the level after its first use (its per-level functions are kept)', () => {
    const { logger, lines } = captureLogger('warn');
    const budget = new LogBudget(100, 100, logger, () => 0);
    const l = budget.wrap(logger).child({ vm: 'a' });
    l.info('before');
    l.level = 'info';
    l.info('after');
    l.level = 'error';
    l.warn('off again');
    expect(lines().map((x) => x.msg)).toEqual(['after']);
    expect(l.info).toBe(l.info);
  });

  it('writes the same line as pino children nested the same way', () => {
    const ours = captureLogger('info');
    const theirs = captureLogger('info');
    const budget = new LogBudget(100, 100, ours.logger, () => 0);
    budget.wrap(ours.logger, { remote: 'r' }).child({ vm: 'a' }).child({ sessionId: 's' }).info({ targetMib: 1 }, 'balloon reached its target');
    theirs.logger.child({ remote: 'r' }).child({ vm: 'a' }).child({ sessionId: 's' }).info({ targetMib: 1 }, 'balloon reached its target');
    // Byte for byte, but for the clock.
    const text = (t: string) => t.replace(/"time":\d+/g, '"time":0');
    expect(ours.lines()).toHaveLength(1);
    expect(text(ours.text())).toBe(text(theirs.text()));
  });

  it("makes a session's pino child on its first line at a level that is on, once, with every binding in order", () => {
    const { logger, lines } = captureLogger('info');
    const made = vi.spyOn(logger, 'child');
    const budget = new LogBudget(100, 100, logger, () => 0);
    const session = budget.wrap(logger, { remote: '10.0.0.1' }).child({ vm: 'a' }).child({ sessionId: 's1' });
    for (let i = 0; i < 10; i++) session.debug('off');
    expect(made).not.toHaveBeenCalled();
    expect(lines()).toEqual([]);
    expect(budget.suppressed).toBe(0);
    session.info({ n: 1 }, 'first');
    // One pino child with all three bindings (pino's own child() is the root's, spied), made once.
    expect(made).toHaveBeenCalledTimes(1);
    expect(made).toHaveBeenLastCalledWith({ remote: '10.0.0.1', vm: 'a', sessionId: 's1' });
    session.warn('second');
    expect(made).toHaveBeenCalledTimes(1);
    expect(lines().map((l) => [l.remote, l.vm, l.sessionId, l.msg])).toEqual([
      ['10.0.0.1', 'a', 's1', 'first'],
      ['10.0.0.1', 'a', 's1', 'second'],
    ]);
    expect(Object.keys(lines()[0]!).filter((k) => ['remote', 'vm', 'sessionId'].includes(k))).toEqual(['remote', 'vm', 'sessionId']);
    // A child of a logger already made is made from it, with its own bindings only.
    session.child({ part: 'x' }).warn('third');
    expect(made).toHaveBeenCalledTimes(2);
    expect(made).toHaveBeenLastCalledWith({ part: 'x' });
    expect(lines()[2]).toMatchObject({ remote: '10.0.0.1', vm: 'a', sessionId: 's1', part: 'x', msg: 'third' });
    // Reading anything else (the level) makes the child too, and it reads the same.
    const other = budget.wrap(logger, { remote: 'b' });
    expect(other.level).toBe('info');
    expect(made).toHaveBeenCalledTimes(3);
  });
});
