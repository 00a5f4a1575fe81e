#!/usr/bin/env node
// The second half of `npm run build`: tsc emits JS and .d.ts for the .ts
// files; everything else a package's src/ holds at run time (the dashboard's
// public/ files, the balloon's worker and its libc binding, the generated
// protobuf code and their declarations) is copied to the same place under
// dist/, so that the built package finds it exactly where src/ did. One rule
// instead of a list per package: any non-.ts file except tests, fixtures and
// READMEs. Then it removes what dist/ holds for a src file that is gone (tsc
// never deletes an output), so a renamed module cannot ship twice.
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
// Every package that tsc -b builds (the ones with a tsconfig.build.json).
const PACKAGES = readdirSync(join(ROOT, 'packages')).filter((name) => existsSync(join(ROOT, 'packages', name, 'tsconfig.build.json')));

/** True for a file the built package needs next to its JS. */
function isRuntimeAsset(rel) {
  const name = rel.split('/').pop();
  if (name === 'README.md') return false;
  if (/\.(test|fixture)\.|(^|\/)test-support\/|test-fixtures\./.test(rel)) return false;
  // Declarations are copied (tsc does not emit its .d.ts inputs); other .ts is compiled.
  return !name.endsWith('.ts') || name.endsWith('.d.ts');
}

function* walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}

let copied = 0;
let removed = 0;
for (const pkg of PACKAGES) {
  const src = join(ROOT, 'packages', pkg, 'src');
  const dist = join(ROOT, 'packages', pkg, 'dist');
  for (const file of walk(src)) {
    const rel = relative(src, file);
    if (!isRuntimeAsset(rel)) continue;
    const target = join(dist, rel);
    // Unchanged files are left alone: a process may be reading them (a test's agent running dist/).
    if (existsSync(target) && readFileSync(target).equals(readFileSync(file))) continue;
    cpSync(file, target);
    copied++;
  }
  for (const file of walk(dist)) {
    const rel = relative(dist, file);
    if (rel.endsWith('.tsbuildinfo')) continue;
    // dist/x.js, x.js.map and x.d.ts come from src/x.ts; an asset from itself.
    const fromTs = rel.replace(/(\.js\.map|\.js|\.d\.ts)$/, '.ts');
    if (existsSync(join(src, rel)) || existsSync(join(src, fromTs))) continue;
    rmSync(file);
    removed++;
  }
}
process.stderr.write(`build: ${copied} asset files copied (changed or new) into dist/, ${removed} stale files removed\n`);
