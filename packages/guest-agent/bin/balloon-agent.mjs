#!/usr/bin/env node
// balloon-agent with plain node: the built command in dist/. In this repository's
// checkout, tests and scripts run with --conditions=@memballoon/source, which
// maps #cli/ to src/ and loads it through tsx (a dev dependency): no build.
// --version is answered here, from this package's manifest, before any load.
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

if (process.argv[2] === '--version' && process.argv.length === 3) {
  process.stdout.write(`${JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version}\n`);
} else {
  // No optimizing compiler (TurboFan) in the agent, set before any of its
  // code loads: its compile zones and the binary's code pages it touches
  // were ~8 MiB of an idle agent's RSS (issue 15), and the agent's hot work
  // is the kernel's (faulting pages in), not JavaScript's: its JS per MiB
  // is 256 stores, which the baseline compiler runs well. The command only:
  // the library never changes its embedder's V8 flags.
  setFlagsFromString('--no-opt');
  const entry = import.meta.resolve('#cli/main');
  if (entry.endsWith('.ts')) (await import('tsx/esm/api')).register();
  await import(entry);
}
