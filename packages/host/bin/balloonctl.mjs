#!/usr/bin/env node
// balloonctl with plain node: the built command in dist/. In this repository's
// checkout, tests and scripts run with --conditions=@memballoon/source, which
// maps #cli/ to src/ and loads it through tsx (a dev dependency): no build.
const entry = import.meta.resolve('#cli/balloonctl');
if (entry.endsWith('.ts')) (await import('tsx/esm/api')).register();
await import(entry);
