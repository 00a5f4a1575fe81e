// The README's two examples of testing a service under memory pressure
// (examples/vitest and examples/node-test) run as a user runs them: the
// built @memballoon/testing (dist/, which `npm test` builds first), plain
// node, no source condition. Each starts its own in-process host and guest.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== 'NODE_OPTIONS' && !k.startsWith('VITEST') && !k.startsWith('MEMBALLOON_')) env[k] = v;
  return env;
}

function run(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, env: userEnv(), timeout: 240_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

describe('the README examples', () => {
  it('has the built toolkit to run them with (npm test builds it first)', () => {
    expect(existsSync(join(ROOT, 'packages/testing/dist/index.js')), 'packages/testing/dist is missing: run `npm run build`').toBe(true);
  });

  it('the node:test example passes', async () => {
    const r = await run(['--test', 'examples/node-test/squeeze.test.mjs']);
    expect(r.out).toMatch(/# pass 1/);
    expect(r.code, r.out).toBe(0);
  }, 240_000);

  it('the vitest example passes', async () => {
    const r = await run([join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', '--root', 'examples/vitest']);
    expect(r.out).toMatch(/1 passed/);
    expect(r.code, r.out).toBe(0);
  }, 240_000);
});
