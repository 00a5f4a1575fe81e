// Page fusion against the real kernel: three processes hold the same 32 MiB
// (plus private data), advise it mergeable, and the host's KSM controller
// raises the scan rate. The kernel's own counters must show the common pages
// merged, and a write to one page in one process must un-share that page
// only (copy-on-write). KSM is put back as it was found.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { KsmController, KsmSysfs, probeKsm } from '@memballoon/host';
import { ksmMergingPages } from '@memballoon/guest-agent';
import { waitFor } from './support/wait.js';

const COMMON_MIB = 32;
const PRIVATE_MIB = 4;
const COMMON_PAGES = (COMMON_MIB * 1024 * 1024) / 4096;
const CHILD = fileURLToPath(new URL('./fusion-ksm-child.ts', import.meta.url));
const ksm = probeKsm();
const canMerge = ksm.ok && existsSync('/proc/self/ksm_merging_pages');

interface Child {
  proc: ChildProcessWithoutNullStreams;
  pid: number;
  next(): Promise<Record<string, unknown>>;
}

function startChild(seed: number): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, String(seed), String(COMMON_MIB), String(PRIVATE_MIB)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: Array<(line: string) => void> = [];
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const w = waiters.shift();
    if (w) w(line);
    else lines.push(line);
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const next = (): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const line = lines.shift();
      if (line !== undefined) return resolve(JSON.parse(line));
      const onExit = (): void => reject(new Error(`child exited: ${stderr}`));
      proc.once('exit', onExit);
      waiters.push((l) => {
        proc.off('exit', onExit);
        resolve(JSON.parse(l));
      });
    });
  return next().then((hello) => {
    if (hello.advice !== 'ok') throw new Error(`madvise failed in the child: ${String(hello.advice)}`);
    return { proc, pid: Number(hello.pid), next };
  });
}

// The KSM driver lock may be held by fusion-e2e's host for as long as its
// page-fusion VMs run: this test waits for it, hence its longer timeout.
const children: Child[] = [];
const controller = new KsmController();
afterAll(() => {
  for (const c of children) c.proc.kill('SIGKILL');
  controller.close();
});

describe.runIf(canMerge)('page fusion on the real kernel (KSM)', () => {
  it('merges the common pages of three processes, and a write un-shares exactly one page', async () => {
    const sysfs = new KsmSysfs();
    const found = sysfs.read();
    // A fresh seed per run: no other process on the machine holds this content.
    const seed = (Math.random() * 2 ** 32) >>> 0;
    for (let i = 0; i < 3; i++) children.push(await startChild(seed));
    const merged = (): number[] => children.map((c) => ksmMergingPages(c.pid));

    // The controller gets the lock once no other driver (another test's host) holds it.
    const inputs = () => {
      const unmerged = merged().reduce((s, n) => s + Math.max(0, COMMON_PAGES - n), 0) / 256;
      return { fusionVmsRunning: 3, sharableMib: 3 * COMMON_MIB, unmergedMib: unmerged };
    };
    await waitFor(() => controller.tick(inputs()).driving, { timeoutMs: 120_000, intervalMs: 250, what: 'the KSM driver lock' });
    const driven = controller.report();
    expect(driven.kernel?.run).toBe(true);
    // The hints show 96 MiB unmerged: a burst, ksmd scanning without sleep at nice 0.
    expect(driven).toMatchObject({ burst: true, settings: { sleepMillisecs: 0, ksmdNice: 0 } });
    expect(driven.kernel?.ksmdNice).toBe(0);
    expect(driven.kernel?.pagesToScan).toBe(driven.settings?.pagesToScan);

    // Every process has exactly its common pages merged; its private pages (random) none.
    await waitFor(
      () => {
        controller.tick(inputs());
        const m = merged();
        return m.every((n) => n === COMMON_PAGES) && m;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: `${COMMON_PAGES} merged pages in each process (last: ${merged().join(', ')})` },
    );
    const global = sysfs.read();
    expect(global.pagesShared).toBeGreaterThanOrEqual(COMMON_PAGES);
    expect(global.pagesSharing).toBeGreaterThanOrEqual(2 * COMMON_PAGES);

    // Copy-on-write: one page of one process changes; only that page leaves the merge.
    children[0]!.proc.stdin.write('write 100\n');
    expect(await children[0]!.next()).toEqual({ wrote: 100 });
    await waitFor(
      () => {
        controller.tick(inputs());
        return ksmMergingPages(children[0]!.pid) === COMMON_PAGES - 1;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: 'one page un-shared in the written process' },
    );
    expect(merged()).toEqual([COMMON_PAGES - 1, COMMON_PAGES, COMMON_PAGES]);
    // The other two still share that page with each other, so the kernel
    // still holds at least as many distinct merged pages.
    expect(sysfs.read().pagesShared).toBeGreaterThanOrEqual(COMMON_PAGES);

    // KSM goes back as it was found.
    for (const c of children) c.proc.kill('SIGKILL');
    controller.close();
    const after = sysfs.read();
    expect({ run: after.run, pagesToScan: after.pagesToScan, sleepMillisecs: after.sleepMillisecs, ksmdNice: after.ksmdNice }).toEqual({
      run: found.run,
      pagesToScan: found.pagesToScan,
      sleepMillisecs: found.sleepMillisecs,
      ksmdNice: found.ksmdNice,
    });
  }, 240_000);
});

describe.runIf(!canMerge)('page fusion on the real kernel (KSM unavailable)', () => {
  it('says why', () => {
    expect(ksm.ok ? 'no /proc/self/ksm_merging_pages' : ksm.detail).toMatch(/KSM|ksm/);
  });
});
