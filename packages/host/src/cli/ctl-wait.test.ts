// controlvm --wait against a scripted admin API: what it shows while the host
// reclaims from other VMs, and what it says when the host refuses. The fake
// host advances one step per poll, so the test counts polls, not time.
import { describe, expect, it } from 'vitest';
import type { BalloonView, VmView } from '../service/views.js';
import { HostError } from '../errors.js';
import { reclaimLine, setBalloonAndWait } from './ctl-wait.js';

const balloon = (targetMib: number, actualMib: number, extra: Partial<BalloonView> = {}): BalloonView => ({
  targetMib,
  actualMib,
  lockedMib: actualMib,
  handedOffMib: 0,
  state: actualMib === targetMib ? 'steady' : 'inflating',
  reason: 'none',
  lock: 'locked',
  generation: 1,
  ...extra,
});
const vm = (name: string, b: BalloonView): VmView => ({
  name,
  state: 'running',
  memoryMib: 1024,
  defaultBalloonMib: 0,
  pageFusion: false,
  balloonPolicy: 'manual',
  memoryMinMib: 0,
  balloonMaxMib: null,
  memoryWeight: 100,
  memoryBufferPercent: 20,
  balloon: b,
});

/** A host where vm-medium's deflate waits until vm-large has inflated from 0 to 300 MiB, 100 MiB per poll. */
function reclaimingHost(outcome: 'ok' | 'refused') {
  let large = 0;
  let polls = 0;
  let medium = balloon(200, 200);
  let release: (() => void) | undefined;
  return {
    client: {
      async vms() {
        polls++;
        // The first call is the baseline, taken before the PUT.
        if (polls > 1 && large < 300) large = Math.min(300, large + 100);
        if (large === 300) release?.();
        return [vm('vm-medium', medium), vm('vm-large', balloon(polls > 1 ? 300 : 0, large))];
      },
      async vm(name: string) {
        return vm(name, medium);
      },
      async setBalloon(name: string, targetMib: number) {
        await new Promise<void>((r) => (release = r));
        if (outcome === 'refused')
          throw new HostError(
            'pool_exhausted',
            "could not reclaim 300 MiB for VM 'vm-medium': vm-large stopped short at 250 of 300 MiB (guest_floor); 50 MiB missing",
          );
        medium = balloon(targetMib, targetMib, { generation: 2 });
        return vm(name, balloon(targetMib, 200, { generation: 2 }));
      },
    },
  };
}

describe('controlvm --wait', () => {
  it('shows the other VMs inflating while the host reclaims, then the balloon itself', async () => {
    const lines: string[] = [];
    const host = reclaimingHost('ok');
    const done = await setBalloonAndWait(host.client, 'vm-medium', 0, 60_000, { tty: false, write: (t) => lines.push(t) });
    expect(done.balloon?.actualMib).toBe(0);
    expect(lines).toContain("VM 'vm-medium': waiting for other VMs to inflate: vm-large 100/300 MiB\n");
    expect(lines.at(-1)).toBe("VM 'vm-medium': balloon 0/0 MiB\n");
    // Each line once.
    expect(new Set(lines).size).toBe(lines.length);
  });

  it("fails with the host's message, which names the shortfall", async () => {
    const host = reclaimingHost('refused');
    const err = await setBalloonAndWait(host.client, 'vm-medium', 0, 60_000, undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect(err).toMatchObject({ code: 'pool_exhausted', message: expect.stringMatching(/50 MiB missing/) });
  });

  it('redraws one line on a terminal and ends it before returning', async () => {
    let text = '';
    await setBalloonAndWait(reclaimingHost('ok').client, 'vm-medium', 0, 60_000, { tty: true, write: (t) => (text += t) });
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's erase-line sequence is what is asserted
    expect(text).toMatch(/\r\x1b\[KVM 'vm-medium': waiting for other VMs to inflate/);
    expect(text.endsWith('\n')).toBe(true);
  });

  it('waits for a starting VM to be admitted, then for its balloon (counted in polls)', async () => {
    // Two polls starting, one running at the Welcome's target, then the kept target inflating over two polls.
    const script: VmView[] = [
      { ...vm('vm-new', balloon(0, 0)), state: 'poweroff', starting: true, balloon: undefined } as VmView,
      { ...vm('vm-new', balloon(0, 0)), state: 'poweroff', starting: true, balloon: undefined } as VmView,
      vm('vm-new', balloon(0, 0, { generation: 1 })),
      vm('vm-new', balloon(64, 32, { generation: 2 })),
      vm('vm-new', balloon(64, 64, { generation: 2 })),
    ];
    let polls = 0;
    const client = {
      vms: async () => [],
      vm: async () => script[Math.min(polls++, script.length - 1)]!,
      setBalloon: async () => ({ ...script[0]! }),
    };
    const lines: string[] = [];
    const done = await setBalloonAndWait(client as never, 'vm-new', 64, 60_000, { tty: false, write: (t) => lines.push(t) });
    expect(done.balloon).toMatchObject({ actualMib: 64, generation: 2 });
    expect(polls).toBe(5);
    expect(lines.join('')).toMatch(/vm-new' is starting: balloon 64 MiB once its guest is admitted\n.*balloon 32\/64 MiB\n.*balloon 64\/64 MiB/s);
  });

  it('names only the VMs a reclaim is moving', () => {
    const before = new Map([
      ['a', 0],
      ['b', 100],
    ]);
    expect(reclaimLine('x', before, [vm('a', balloon(100, 40)), vm('b', balloon(100, 50)), vm('x', balloon(0, 10))])).toBe(
      "VM 'x': waiting for other VMs to inflate: a 40/100 MiB",
    );
    expect(reclaimLine('x', before, [vm('a', balloon(100, 100))])).toBeUndefined();
  });
});
