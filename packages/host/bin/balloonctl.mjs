#!/usr/bin/env node
// balloonctl with plain node: the built command in dist/. In this repository's
// checkout, tests and scripts run with --conditions=@memballoon/source, which
// maps #cli/ to src/ and loads it through tsx (a dev dependency): no build.
// --version is answered here, from this package's manifest, before any load.
import { readFileSync } from 'node:fs';

if (process.argv[2] === '--version' && process.argv.length === 3) {
  process.stdout.write(`${JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version}\n`);
} else {
  const entry = import.meta.resolve('#cli/balloonctl');
  if (entry.endsWith('.ts')) (await import('tsx/esm/api')).register();
  await import(entry);
}
