// The dashboard in a real browser (headless Chromium driven by playwright-core):
// the page lists the running VMs, setting a balloon from the page moves the
// actual value shown, a refusal is shown readably, and a screenshot is written
// to test-output/. Once against a fake host (the page alone), once against the
// real host with three balloon-agent processes (the screenshot the README
// shows: test-output/dashboard.png, copied to docs/dashboard.png). Skipped,
// with the reason printed, where Chromium is missing.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startHost, type HostHandle } from '@memballoon/host';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeHost, type FakeHost } from '../packages/host/src/dashboard/test-fixtures.js';
import { waitFor } from './support/index.js';
import { cleanUp } from './support/cleanup.js';

const CHROMIUM = '/usr/bin/chromium';
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];
const OUTPUT_DIR = fileURLToPath(new URL('../test-output/', import.meta.url));
const AGENT_BIN = fileURLToPath(new URL('../packages/guest-agent/bin/balloon-agent.mjs', import.meta.url));
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.log(`dashboard browser tests skipped: ${CHROMIUM} not found (Debian's chromium package provides it)`);

/** A headless Chromium with a fresh profile, and the page errors it saw. */
async function openBrowser(): Promise<{ context: BrowserContext; page: Page; pageErrors: string[]; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'memballoon-chromium-'));
  const context = await chromium
    .launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: LAUNCH_ARGS,
      headless: true,
      viewport: { width: 1280, height: 1000 },
    })
    .catch((err: unknown) => {
      rmSync(profile, { recursive: true, force: true });
      throw err;
    });
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    // Chromium logs every 4xx/5xx answer; refusals are expected, script errors are not.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(msg.text());
  });
  page.on('response', (res) => {
    if (res.status() === 404) pageErrors.push(`404 for ${res.url()}`);
  });
  return {
    context,
    page,
    pageErrors,
    async close() {
      await cleanUp(
        () => context.close(),
        () => rmSync(profile, { recursive: true, force: true }),
      );
    },
  };
}

/** The text of one figure on a VM's card. */
function field(page: Page, vm: string, name: string) {
  return page.locator(`.card[data-vm="${vm}"] [data-field="${name}"]`);
}

describe.skipIf(!haveChromium)('dashboard in Chromium (fake host)', () => {
  let host: FakeHost | undefined;
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;
  afterEach(async () => {
    await browser?.close();
    await host?.close();
    browser = undefined;
    host = undefined;
  });

  it('lists the running VMs, moves the actual balloon when one is set, and shows refusals', async () => {
    host = await startFakeHost();
    browser = await openBrowser();
    const { page } = browser;
    await page.goto(`${host.url}/#token=secret-token`);

    await expect.poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 15_000 }).toBe('live');
    await expect
      .poll(() => page.locator('.card[data-state="running"] h3').allTextContents(), { timeout: 15_000 })
      .toEqual(['vm-large', 'vm-medium', 'vm-small']);
    expect(await page.locator('.card[data-vm="vm-off"] [data-field="state"]').textContent()).toBe('powered off');
    expect(await field(page, 'vm-large', 'actualMib').textContent()).toBe('600 MiB');
    // The token left the address bar once read.
    expect(page.url()).not.toContain('secret-token');

    const card = page.locator('.card[data-vm="vm-large"]');
    await card.locator('input[name="targetMib"]').fill('800');
    await card.locator('button[type="submit"]').click();
    await expect.poll(() => field(page, 'vm-large', 'targetMib').textContent(), { timeout: 15_000 }).toBe('800 MiB');
    await expect.poll(() => field(page, 'vm-large', 'actualMib').textContent(), { timeout: 15_000 }).toBe('800 MiB');
    expect(host.lastAuthorization).toBe('Bearer secret-token');
    await expect.poll(() => page.locator('#pool-figures [data-field="reclaimedMib"] dd').first().textContent()).toBe('1,056 MiB');

    await card.locator('input[name="targetMib"]').fill('950');
    await card.locator('button[type="submit"]').click();
    const message = card.locator('.message[data-kind="error"]');
    await expect.poll(() => message.textContent(), { timeout: 15_000 }).toContain('90 %');
    expect(await field(page, 'vm-large', 'targetMib').textContent()).toBe('800 MiB');

    // The chart has drawn (uPlot's canvas), then the screenshot.
    await expect.poll(() => card.locator('canvas').count()).toBeGreaterThan(0);
    mkdirSync(OUTPUT_DIR, { recursive: true });
    await page.screenshot({ path: join(OUTPUT_DIR, 'dashboard-fake.png'), fullPage: true, animations: 'disabled' });
    expect(browser.pageErrors).toEqual([]);
  });

  it('shows that the live stream is down when the host ends it', async () => {
    host = await startFakeHost();
    browser = await openBrowser();
    const { page } = browser;
    await page.goto(`${host.url}/`);
    await expect.poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 15_000 }).toBe('live');
    host.dashboard.close(); // ends the stream; new connections get 503
    await expect.poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 15_000 }).toBe('down');
    // A new fetch error is logged by Chromium as a console error for the 503; that is expected here.
  });
});

/** The demo's guests: a pool smaller than their sum, so balloons must hold memory back. */
const GUESTS = [
  { name: 'vm-small', memoryMib: 512 },
  { name: 'vm-medium', memoryMib: 768 },
  { name: 'vm-large', memoryMib: 1024 },
] as const;
const POOL_SIZE_MIB = 1536;

describe.skipIf(!haveChromium)('dashboard in Chromium (real host, three agents)', () => {
  let host: HostHandle | undefined;
  let dataDir: string | undefined;
  const agents: ChildProcess[] = [];
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'memballoon-dashboard-'));
    host = await startHost({ listenPort: 0, dataDir, poolSizeMib: POOL_SIZE_MIB, autoRegister: true });
    for (const guest of GUESTS) {
      const agent = spawn(
        process.execPath,
        [AGENT_BIN, '--host', host.url, '--name', guest.name, '--memory-mib', String(guest.memoryMib), '--log-level', 'warn'],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      agents.push(agent);
      // One after the other, as the demo starts them: each admission may reclaim from the others.
      await waitFor(() => host!.service.snapshot().vms.some((vm) => vm.name === guest.name && vm.state === 'running'), {
        timeoutMs: 45_000,
        what: `${guest.name} to run`,
      });
    }
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(
      agents.map(
        (agent) =>
          new Promise<void>((resolve) => {
            if (agent.exitCode !== null || agent.signalCode !== null) return resolve();
            agent.once('exit', () => resolve());
            agent.kill('SIGINT'); // deflate, Goodbye, exit
          }),
      ),
    );
    await host?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('lists the running VMs, moves the actual balloon set from the page, shows refusals, and writes the screenshot', async () => {
    browser = await openBrowser();
    const { page } = browser;
    // The admin API needs the admin token, which the host keeps in its data dir; the page takes it from #token=….
    const tokenFile = join(dataDir!, 'admin.token');
    const adminToken = existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined;
    await page.goto(`${host!.url}/`);
    if (adminToken) {
      // Without the token the page says what it needs; given one in the address bar, it goes live.
      await expect.poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 30_000 }).toBe('auth');
      expect(await page.locator('#conn').textContent()).toContain('#token=');
      await page.evaluate(`location.hash = ${JSON.stringify(`#token=${adminToken}`)}`);
      await expect.poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 30_000 }).toBe('live');
      expect(page.url()).not.toContain(adminToken);
    }
    await expect
      .poll(() => page.locator('.card[data-state="running"] h3').allTextContents(), { timeout: 30_000 })
      .toEqual(['vm-large', 'vm-medium', 'vm-small']);
    // The pool overcommits: the guests' memory is more than the pool.
    expect(await page.locator('#pool-figures [data-field="sizeMib"] dd').first().textContent()).toBe('1,536 MiB');
    expect(await page.locator('#pool-figures [data-field="guestsMib"] dd').first().textContent()).toBe('2,304 MiB');

    // A target the large VM does not have yet, so the value shown must move.
    const before = host!.service.snapshot().vms.find((vm) => vm.name === 'vm-large')!.balloon!.actualMib;
    const targetMib = before === 256 ? 320 : 256;
    const card = page.locator('.card[data-vm="vm-large"]');
    await card.locator('input[name="targetMib"]').fill(String(targetMib));
    await card.locator('button[type="submit"]').click();
    await expect.poll(() => card.locator('.message').getAttribute('data-kind'), { timeout: 30_000 }).toBe('ok');
    await expect.poll(() => field(page, 'vm-large', 'actualMib').textContent(), { timeout: 30_000 }).toBe(`${targetMib} MiB`);
    // The guest really holds it: the host's view agrees with the page.
    expect(host!.service.snapshot().vms.find((vm) => vm.name === 'vm-large')!.balloon!.actualMib).toBe(targetMib);

    // The 90 % rule, as the host words it.
    await card.locator('input[name="targetMib"]').fill('1000');
    await card.locator('button[type="submit"]').click();
    await expect.poll(() => card.locator('.message[data-kind="error"]').textContent(), { timeout: 30_000 }).toContain('90 %');

    // Let the medium VM deflate a little too, so the charts have a story, then the screenshot.
    const medium = page.locator('.card[data-vm="vm-medium"]');
    const mediumBefore = host!.service.snapshot().vms.find((vm) => vm.name === 'vm-medium')!.balloon!.actualMib;
    const mediumTarget = Math.max(0, mediumBefore - 64);
    await medium.locator('input[name="targetMib"]').fill(String(mediumTarget));
    await medium.locator('button[type="submit"]').click();
    await expect.poll(() => field(page, 'vm-medium', 'actualMib').textContent(), { timeout: 30_000 }).toBe(`${mediumTarget} MiB`);
    await expect.poll(() => page.locator('.card canvas').count()).toBe(3);
    mkdirSync(OUTPUT_DIR, { recursive: true });
    await page.screenshot({ path: join(OUTPUT_DIR, 'dashboard.png'), fullPage: true, animations: 'disabled' });
    console.log(`dashboard screenshot: ${join(OUTPUT_DIR, 'dashboard.png')}`);
    expect(browser.pageErrors).toEqual([]);
  });
});

describe.skipIf(!haveChromium)('dashboard in Chromium: starting a VM (real host that starts guests)', () => {
  let host: HostHandle | undefined;
  let dataDir: string | undefined;
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'memballoon-dashboard-start-'));
    host = await startHost({
      listenPort: 0,
      dataDir,
      poolSizeMib: 1024,
      policyIntervalMs: 0,
      fusion: false,
      // Process mode: the page's form is the subject, not the cgroups.
      guests: {
        pathEnv: process.env.PATH ?? '/usr/bin:/bin',
        forceProcessMode: true,
        ...(process.env.NODE_OPTIONS ? { nodeOptions: process.env.NODE_OPTIONS } : {}),
      },
    });
    host.service.createVm({ name: 'vm-start', memoryMib: 256 });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await host?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  const open = async (token: string) => {
    await browser?.close();
    browser = await openBrowser();
    await browser.page.goto(`${host!.url}/#token=${token}`);
    await expect.poll(() => browser!.page.locator('#conn').getAttribute('data-state'), { timeout: 30_000 }).toBe('live');
    return browser.page;
  };

  it('starts a powered-off VM from its card with the admin token, shows a refusal readably, and offers no start with the read-only token', async () => {
    const readonlyToken = readFileSync(join(dataDir!, 'readonly.token'), 'utf8').trim();
    // View only: the card is there, its start form is not.
    let page = await open(readonlyToken);
    const card = () => page.locator('.card[data-vm="vm-start"]');
    await expect.poll(() => card().getAttribute('data-state'), { timeout: 30_000 }).toBe('poweroff');
    expect(await card().locator('form.start').count()).toBe(0);

    page = await open(host!.adminToken!);
    await expect.poll(() => card().locator('form.start').isVisible(), { timeout: 30_000 }).toBe(true);
    // A command the host cannot find: its words, and nothing started.
    await card().locator('input[name="command"]').fill('no-such-command-memballoon --flag');
    await card().locator('form.start button[type="submit"]').click();
    await expect
      .poll(() => card().locator('.message[data-kind="error"]').textContent(), { timeout: 30_000 })
      .toMatch(/'no-such-command-memballoon' not found on PATH/);
    expect(host!.service.vmView('vm-start').state).toBe('poweroff');

    await card().locator('input[name="command"]').fill('sleep 600');
    await card().locator('form.start button[type="submit"]').click();
    await expect.poll(() => card().locator('.message').getAttribute('data-kind'), { timeout: 60_000 }).toBe('ok');
    await expect.poll(() => card().getAttribute('data-state'), { timeout: 30_000 }).toBe('running');
    const vm = host!.service.vmView('vm-start');
    expect(vm.state).toBe('running');
    expect(vm.managed).toMatchObject({ managedBy: 'startvm', command: ['sleep', '600'] });
    expect(await card().locator('.message').textContent()).toBe(`Started (pid ${vm.pid}).`);
    // Running: no start form, the balloon control instead.
    expect(await card().locator('form.start').count()).toBe(0);
    expect(browser!.pageErrors).toEqual([]);
  }, 120_000);
});
