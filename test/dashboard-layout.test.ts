// The dashboard's layout in headless Chromium at three widths (390, 800 and
// 1280 px), against the fake host with ten minutes of history: the charts are
// drawn at once from the host's history; no element's text overflows its box
// (nothing cut off, no "1,024 …"); the figures match the API's snapshot; the
// legend's swatches have the bars' colours; one percentage format; the
// read-only token gives a page without controls. Screenshots go to a temp
// dir and are checked (size, not blank). Skipped, with the reason printed,
// where Chromium is missing.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readEvents } from './support/sse.js';
import { chromium, type Browser } from 'playwright-core';
import { startHost } from '@memballoon/host';
import type { SnapshotEvent } from '../packages/host/src/dashboard/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VmHistory } from '../packages/host/src/dashboard/history.js';
import { startFakeHost, type FakeHost } from '../packages/host/src/dashboard/test-fixtures.js';
import { cleanUp } from './support/cleanup.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.log(`dashboard layout tests skipped: ${CHROMIUM} not found (Debian's chromium package provides it)`);

const WIDTHS = [390, 800, 1280] as const;

/** The first snapshot of the event stream: what the API says the page should show. */
async function firstSnapshot(url: string): Promise<SnapshotEvent> {
  const events = await readEvents(url, (e) => e.some((x) => x.type === 'snapshot'));
  return events.find((e) => e.type === 'snapshot')!.data as SnapshotEvent;
}

describe.skipIf(!haveChromium)('dashboard layout in Chromium', () => {
  let host: FakeHost;
  let browser: Browser;
  const shots = mkdtempSync(join(tmpdir(), 'memballoon-shots-'));
  const historyStartMs = Date.now() - 10 * 60_000;

  beforeAll(async () => {
    // Ten minutes of the large VM's balloon growing, as the host would have sampled it.
    const template = await startFakeHost();
    const running = structuredClone(template.vms.filter((v) => v.state === 'running'));
    await template.close();
    const history = new VmHistory();
    for (let i = 0; i < 60; i++) {
      const vms = structuredClone(running);
      vms.find((v) => v.name === 'vm-large')!.balloon!.actualMib = i * 10;
      history.record(vms, historyStartMs + i * 10_000);
    }
    host = await startFakeHost({ history });
    // No page-fusion VM runs, yet the (fake) host reports KSM on: the header must say why.
    for (const vm of host.vms) host.update(vm.name, (v) => (v.pageFusion = false));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'], headless: true });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await host?.close();
    console.log(`dashboard layout screenshots: ${shots}`);
    if (!process.env.KEEP_SCREENSHOTS) rmSync(shots, { recursive: true, force: true });
  });

  for (const width of WIDTHS) {
    it(`at ${width} px: history drawn at once, nothing overflows, figures match the API`, async () => {
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(err.message));
      await page.goto(`${host.url}/#token=t`);
      await expect.poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 30_000 }).toBe('live');
      await expect.poll(() => page.locator('.card canvas').count(), { timeout: 30_000 }).toBe(3);

      // The history arrived with the page: the large VM's chart starts ten minutes back.
      const chart = page.locator('.card[data-vm="vm-large"] .chart');
      expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(60);
      expect(Number(await chart.getAttribute('data-since-ms'))).toBe(historyStartMs);

      // Figures match the snapshot the API serves.
      const { host: hostView, vms } = await firstSnapshot(host.url);
      const fmt = (n: number) => `${n.toLocaleString('en-US')} MiB`;
      for (const key of ['sizeMib', 'heldMib', 'reclaimedMib', 'freeMib'] as const) {
        expect(await page.locator(`#pool-figures [data-field="${key}"] dd`).first().textContent(), key).toBe(fmt(hostView.pool[key]));
      }
      for (const vm of vms.filter((v) => v.state === 'running')) {
        expect(await page.locator(`.card[data-vm="${vm.name}"] [data-field="memoryMib"]`).textContent()).toBe(fmt(vm.memoryMib));
        expect(await page.locator(`.card[data-vm="${vm.name}"] [data-field="heldMib"]`).textContent()).toBe(fmt(vm.heldMib!));
        expect(await page.locator(`.card[data-vm="${vm.name}"] [data-field="actualMib"]`).textContent()).toBe(fmt(vm.balloon!.actualMib));
      }

      // Nothing cut off: every text-bearing element fits its own box (no clipped or ellipsised figures),
      // and nothing sticks out of the page.
      const overflows = await page.evaluate<string[]>(`(() => {
        const bad = [];
        for (const e of Array.from(document.querySelectorAll('body *'))) {
          if (e.closest('.chart') || e.offsetParent === null) continue;
          const style = getComputedStyle(e);
          if (e.scrollWidth > e.clientWidth + 1 && (style.overflowX === 'hidden' || style.textOverflow === 'ellipsis')) bad.push(e.tagName + '.' + e.className + ' "' + e.textContent + '" ' + e.scrollWidth + '>' + e.clientWidth);
          const r = e.getBoundingClientRect();
          if (r.right > document.documentElement.clientWidth + 1) bad.push(e.tagName + '.' + e.className + ' "' + (e.textContent || '').slice(0, 30) + '" ends at ' + Math.round(r.right));
        }
        return bad;
      })()`);
      expect(overflows).toEqual([]);
      expect(await page.evaluate<boolean>('document.documentElement.scrollWidth <= document.documentElement.clientWidth')).toBe(true);

      // The legend's swatches have the colours of the VMs' bars.
      const colours = await page.evaluate<{ bar: string[]; legend: string[] }>(`({
        bar: Array.from(document.querySelectorAll('#pool-bar .seg.held')).map((s) => getComputedStyle(s).backgroundColor),
        legend: Array.from(document.querySelectorAll('#legend .legend-item[data-vm] .swatch-held')).map((s) => getComputedStyle(s).backgroundColor),
      })`);
      expect(colours.legend.length).toBe(3);
      expect(colours.legend).toEqual(colours.bar);

      // One percentage format: one decimal, a space, %.
      const percents = await page.evaluate<string[]>(`document.body.innerText.match(/\\d[\\d,.]*\\s?%/g) || []`);
      for (const p of percents) expect(p, p).toMatch(/^(\d{1,3}(,\d{3})*\.\d %|90 %)$/);

      // KSM on (the fake host says so), no page-fusion VM running: the header says it is not for memballoon.
      expect(hostView.ksm.running).toBe(true);
      expect(vms.some((v) => v.state === 'running' && v.pageFusion)).toBe(false);
      expect(await page.locator('#host-meta').textContent()).toContain('KSM on for another reason (no page-fusion VM runs)');

      const file = join(shots, `dashboard-${width}.png`);
      await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
      const png = readFileSync(file);
      expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
      expect(png.readUInt32BE(16)).toBe(width);
      expect(statSync(file).size).toBeGreaterThan(20_000);
      expect(errors).toEqual([]);
      await page.close();
    }, 90_000);
  }

  it('offers the size the guest reached when its floor stopped the balloon, not the 90 % rule alone', async () => {
    const page = await browser.newPage({ viewport: { width: 800, height: 900 } });
    await page.goto(`${host.url}/#token=t`);
    const hint = page.locator('.card[data-vm="vm-small"] .control .small');
    await expect.poll(() => hint.textContent(), { timeout: 30_000 }).toBe('up to 460 MiB (the 90 % rule)');
    host.update('vm-small', (vm) => Object.assign(vm.balloon!, { targetMib: 460, actualMib: 341, lockedMib: 341, state: 'short', reason: 'guest_floor' }));
    await expect
      .poll(() => hint.textContent(), { timeout: 30_000 })
      .toBe('up to about 341 MiB (the guest stopped there: guest floor; the 90 % rule allows 460 MiB)');
    // Once the balloon grows past it, the guest's limit is no longer known: the rule again.
    host.update('vm-small', (vm) => Object.assign(vm.balloon!, { targetMib: 400, actualMib: 400, lockedMib: 400, state: 'steady', reason: 'none' }));
    await expect.poll(() => hint.textContent(), { timeout: 30_000 }).toBe('up to 460 MiB (the 90 % rule)');
    await page.close();
  }, 90_000);

  it('with the read-only token, a real host serves a view-only page', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-ro-page-'));
    const real = await startHost({ listenPort: 0, dataDir, poolSizeMib: 1024, policyIntervalMs: 0, fusion: false }).catch((err: unknown) => {
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    });
    try {
      real.service.createVm({ name: 'watched', memoryMib: 256 });
      const page = await browser.newPage({ viewport: { width: 800, height: 900 } });
      await page.goto(`${real.url}/#token=${real.readonlyToken}`);
      await expect.poll(() => page.locator('#conn').textContent(), { timeout: 30_000 }).toBe('live · view only');
      await expect.poll(() => page.locator('.card[data-vm="watched"]').count(), { timeout: 30_000 }).toBe(1);
      expect(await page.locator('.card[data-vm="watched"] form.control').isHidden()).toBe(true);
      await page.close();
      const admin = await browser.newPage({ viewport: { width: 800, height: 900 } });
      await admin.goto(`${real.url}/#token=${real.adminToken}`);
      await expect.poll(() => admin.locator('#conn').textContent(), { timeout: 30_000 }).toBe('live');
      expect(await admin.locator('.card[data-vm="watched"] form.control').isVisible()).toBe(true);
      await admin.close();
    } finally {
      await cleanUp(
        () => real.close(),
        () => rmSync(dataDir, { recursive: true, force: true }),
      );
    }
  }, 90_000);
});
