// The event stream opens with the host's history, so a page load draws the
// last minutes at once; changes are sampled into it (trailing, at most one
// sample per SAMPLE_INTERVAL_MS).
import { readEvents } from '@memballoon/e2e/sse';
import { afterEach, describe, expect, it } from 'vitest';
import { VmHistory, type HistoryEvent } from './history.js';
import { startFakeHost, type FakeHost } from './test-fixtures.js';

/** The first `count` events of the stream: [type, parsed data]. */
async function firstEvents(url: string, count: number): Promise<Array<[string, unknown]>> {
  const events = await readEvents(url, (e) => e.length >= count);
  return events.map((e) => [e.type, e.data]);
}

let host: FakeHost | undefined;
afterEach(async () => {
  await host?.close();
  host = undefined;
});

describe('dashboard history', () => {
  it('is the first event of every connection, before the snapshot', async () => {
    const history = new VmHistory();
    const now = Date.now();
    // Ten minutes of a balloon growing, as the host would have sampled it (the fake host's VMs, before it starts).
    const template = await startFakeHost();
    const snap = structuredClone(template.vms.filter((v) => v.state === 'running'));
    await template.close();
    for (let i = 0; i < 10; i++) {
      const vms = structuredClone(snap);
      vms.find((v) => v.name === 'vm-large')!.balloon!.actualMib = i * 10;
      history.record(vms, now - (10 - i) * 60_000);
    }
    host = await startFakeHost({ history });
    const [first, second] = await firstEvents(host.url, 2);
    const [type, data] = first!;
    const [next] = second!;
    expect(type).toBe('history');
    expect(next).toBe('snapshot');
    const large = (data as HistoryEvent).vms['vm-large']!;
    expect(large.actualMib.slice(0, 10)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    expect(large.atMs[0]).toBe(now - 10 * 60_000);
    expect(Object.keys((data as HistoryEvent).vms).sort()).toEqual(['vm-large', 'vm-medium', 'vm-small']);
  });

  it('samples the host after a change: the newest figures are in it', async () => {
    const history = new VmHistory();
    host = await startFakeHost({ history });
    const before = history.event(Date.now()).vms['vm-small']!.atMs.length;
    host.update('vm-small', (vm) => {
      vm.balloon!.targetMib = 64;
      vm.balloon!.actualMib = 64;
    });
    const after = await new Promise<number[]>((resolve) => {
      const poll = (): void => {
        const series = history.event(Date.now()).vms['vm-small']!;
        if (series.atMs.length > before) resolve(series.actualMib);
        else setTimeout(poll, 50);
      };
      poll();
    });
    expect(after.at(-1)).toBe(64);
  });
});
