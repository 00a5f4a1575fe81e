// The service's log lines (issue 17.8, 17.9): a change of state is logged
// once, a balloon reaching its target says so, and no line carries two pids.
import { captureLogger } from '@memballoon/e2e/capture-log';
import { bodies, type BalloonStatus } from '@memballoon/protocol';
import { describe, expect, it } from 'vitest';
import type { GuestLink } from './host-service.js';
import { testHello, testService } from './test-fixtures.js';

const link = (): GuestLink => ({ open: true, sendTarget() {}, end() {} });

describe('service logs', () => {
  it('logs a guest deflating on its own once, not per 1 MiB step, and the target reached once', async () => {
    const captured = captureLogger('info');
    const { logger } = captured;
    const s = testService({ poolSizeMib: 2048, logger, guestAuth: false });
    s.createVm({ name: 'a', memoryMib: 512 });
    const session = logger.child({ vm: 'a' });
    const r = await s.openSession(testHello('a', 512), link(), session);
    if (!r.ok) throw new Error(r.message);
    await s.setBalloon('a', 300);
    const generation = s.vmView('a').balloon!.generation;
    const status = (actualMib: number, state: BalloonStatus['state'], reason: BalloonStatus['reason'] = 'none') =>
      s.onStatus('a', r.sessionId, bodies.balloonStatus({ generation, targetMib: 300, actualMib, lockedMib: actualMib, state, reason }).value as BalloonStatus);
    for (let mib = 100; mib <= 300; mib += 50) status(mib, mib === 300 ? 'steady' : 'inflating');
    status(300, 'steady');
    for (let mib = 299; mib >= 290; mib--) status(mib, 'deflating', 'guest_pressure');
    status(290, 'short', 'guest_pressure');
    status(290, 'short', 'guest_pressure');
    await new Promise<void>((resolve) => setImmediate(resolve));
    const lines = captured.lines();
    const messages = lines.map((l) => l.msg);
    expect(messages.filter((m) => m === 'balloon reached its target')).toHaveLength(1);
    expect(messages.filter((m) => m === 'the guest is deflating on its own (pressure)')).toHaveLength(1);
    expect(messages.filter((m) => m === 'balloon stopped short')).toHaveLength(1);
    const admitted = lines.find((l) => l.msg === 'guest admitted');
    expect(admitted).toMatchObject({ vm: 'a', agentPid: 42, sessionId: r.sessionId });
    // pino's own pid is the host's; the agent's is agentPid.
    expect(admitted?.pid).toBe(process.pid);
    expect(lines.filter((l) => l.msg === 'VM registered')).toHaveLength(1);
  });
});
