import { captureLogger } from '@memballoon/e2e/capture-log';
import { describe, expect, it } from 'vitest';
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
});
