// A stand-in guest for the real-kernel KSM test: it holds a common region
// (the same content in every child of one run) and a private one (random),
// both page-aligned and advised mergeable, and writes to a page when told.
// Lines on stdin: "write PAGE" | "exit". Lines on stdout: JSON.
import { randomFillSync } from 'node:crypto';
import { createInterface } from 'node:readline';
import { allocateAligned, libcMergeAdvisor } from '@memballoon/guest-agent';

const [seedArg, commonMibArg, privateMibArg] = process.argv.slice(2);
const seed = Number(seedArg);
const PAGE = 4096;
const common = allocateAligned(Number(commonMibArg) * 1024 * 1024);
const priv = allocateAligned(Number(privateMibArg) * 1024 * 1024);

// Every page distinct, and the same in every child of a run (same seed).
const words = new Uint32Array(common.buffer);
const wordsPerPage = PAGE / 4;
for (let p = 0; p < words.length / wordsPerPage; p++) {
  let x = (seed ^ Math.imul(p + 1, 0x9e3779b1)) >>> 0;
  for (let w = 0; w < wordsPerPage; w++) words[p * wordsPerPage + w] = x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
}
for (let at = 0; at < priv.bytes.byteLength; at += 65536) randomFillSync(priv.bytes.subarray(at, at + 65536));

const advice = [libcMergeAdvisor.advise(common.bytes, true), libcMergeAdvisor.advise(priv.bytes, true)];
const failed = advice.find((r) => !r.ok);
process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, advice: failed && !failed.ok ? failed.message : 'ok' })}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.trim().split(' ');
  if (cmd === 'write') {
    const at = Number(arg) * PAGE + 123;
    common.bytes[at] = (common.bytes[at]! + 1) & 0xff;
    process.stdout.write(`${JSON.stringify({ wrote: Number(arg) })}\n`);
  } else if (cmd === 'exit') {
    process.exit(0);
  }
});
