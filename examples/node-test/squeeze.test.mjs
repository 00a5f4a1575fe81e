// Testing a service under memory pressure with node:test (see the README's guide).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchGuest, withMemoryPressure } from '@memballoon/testing';

const server = fileURLToPath(new URL('../service/server.mjs', import.meta.url));

test('the service keeps answering while a balloon takes 192 MiB of its 384', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'example-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const portFile = join(dir, 'port');
  const vm = await launchGuest({ memoryMib: 384, command: [process.execPath, server, portFile] });
  try {
    for (const deadline = Date.now() + 30_000; !existsSync(portFile); ) {
      assert.ok(Date.now() < deadline, 'the service did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    const url = `http://127.0.0.1:${readFileSync(portFile, 'utf8')}`;
    await withMemoryPressure(vm, 192, async () => {
      const res = await fetch(`${url}/fill`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { ok: true, cacheMib: 8 });
    });
  } finally {
    await vm.close();
  }
});
