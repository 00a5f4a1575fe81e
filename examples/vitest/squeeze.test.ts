// Testing a service under memory pressure with vitest (see the README's guide).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchGuest, withMemoryPressure } from '@memballoon/testing';
import { expect, onTestFinished, test } from 'vitest';

const server = fileURLToPath(new URL('../service/server.mjs', import.meta.url));

test('the service keeps answering while a balloon takes 192 MiB of its 384', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'example-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const portFile = join(dir, 'port');
  await using vm = await launchGuest({ memoryMib: 384, command: [process.execPath, server, portFile] });
  await expect.poll(() => existsSync(portFile), { timeout: 30_000 }).toBe(true);
  const url = `http://127.0.0.1:${readFileSync(portFile, 'utf8')}`;

  await withMemoryPressure(vm, 192, async () => {
    const res = await fetch(`${url}/fill`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, cacheMib: 8 });
  });
});
