// A stand-in guest for the page fusion benchmark: it fills a common region
// (the same in every guest of one run, every page distinct) and a private one
// (random), advises both mergeable, says so on stdout and waits to be killed.
import { randomFillSync } from 'node:crypto';
import { allocateAligned, libcMergeAdvisor } from '@memballoon/guest-agent';
import { fillCommon } from './fusion-content.js';

const [seedArg, commonMibArg, privateMibArg] = process.argv.slice(2);
const common = allocateAligned(Number(commonMibArg) * 1024 * 1024);
fillCommon(common.bytes, Number(seedArg));
const privateMib = Number(privateMibArg);
const priv = privateMib > 0 ? allocateAligned(privateMib * 1024 * 1024) : null;
if (priv) for (let at = 0; at < priv.bytes.byteLength; at += 65536) randomFillSync(priv.bytes.subarray(at, at + 65536));
const results = [libcMergeAdvisor.advise(common.bytes, true), ...(priv ? [libcMergeAdvisor.advise(priv.bytes, true)] : [])];
const failed = results.find((r) => !r.ok);
process.stdout.write(`${JSON.stringify({ pid: process.pid, advice: failed && !failed.ok ? failed.message : 'ok' })}\n`);
// Stay alive until the benchmark kills us, and keep the regions referenced:
// module variables that no closure uses may be collected, and a collected
// SAB is unmapped (its pages would never merge).
const held = [common, priv];
setInterval(() => held.length, 1 << 30);
