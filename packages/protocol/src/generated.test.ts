// The generated code is committed; these tests keep it honest: it must be
// exactly what the generator makes from the .proto today, it must load under
// plain Node ESM (protobufjs' ESM output has had import bugs), and the .proto
// must compile with the standard protoc so guests can use any language.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const pkgDir = fileURLToPath(new URL('..', import.meta.url));
const outDir = mkdtempSync(join(tmpdir(), 'memballoon-gen-'));
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

function protocPath(): string | null {
  const found = spawnSync('sh', ['-c', 'command -v protoc'], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : null;
}

describe('generated code', () => {
  it('matches what the generator makes from the .proto', () => {
    execFileSync(process.execPath, [join(pkgDir, 'scripts/generate.mjs'), outDir], { cwd: pkgDir, stdio: 'pipe' });
    for (const file of ['memballoon.js', 'memballoon.d.ts']) {
      const fresh = readFileSync(join(outDir, file), 'utf8');
      const committed = readFileSync(join(pkgDir, 'src/generated', file), 'utf8');
      expect(committed, `src/generated/${file} is stale: run npm run generate`).toBe(fresh);
    }
  });

  it('loads under plain Node ESM and says it is generated', () => {
    const file = join(pkgDir, 'src/generated/memballoon.js');
    const out = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', `import { memballoon } from ${JSON.stringify(file)}; console.log(typeof memballoon.v1.Envelope.decode);`],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe('function');
    expect(readFileSync(file, 'utf8').split('\n')[0]).toMatch(/^\/\/ GENERATED /);
  });
});

describe('protoc', () => {
  const protoc = protocPath();
  if (!protoc) console.log('skipping the protoc check: protoc is not installed (Debian package protobuf-compiler; .ci/run installs it)');
  it.skipIf(!protoc)('accepts the .proto', () => {
    const res = spawnSync(protoc!, ['--include_imports', '--descriptor_set_out=/dev/null', '-I', join(pkgDir, 'proto'), 'memballoon/v1/memballoon.proto'], {
      encoding: 'utf8',
    });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
  });
});
