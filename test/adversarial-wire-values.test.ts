// Values a guest in another language (or a newer agent) may send, written
// from the .proto alone (protobufjs loading memballoon.proto, raw frames):
// an enum value this host does not know, stats whose parts exceed their
// whole, and a Hello whose balloon is above the VM's memory. Each gets what
// the .proto's comments say: unknown enum values read as UNSPECIFIED (a
// Goodbye still ends the session); free above total is OUT_OF_RANGE and
// the session goes on (available above it is tolerated, as the .proto
// says); a Hello's balloon or target above the VM's memory is OUT_OF_RANGE,
// fatal (4003).
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { HostHandle } from '@memballoon/host';
import { tempDataDir } from './support/host.js';
import { createVms, startTestHost } from './support/in-process-host.js';
import { waitFor } from './support/wait.js';

const PROTO = fileURLToPath(new URL('../packages/protocol/proto/memballoon/v1/memballoon.proto', import.meta.url));
const Envelope = protobuf.loadSync(PROTO).lookupType('memballoon.v1.Envelope');
const MIB = 1024 * 1024;

type Decoded = Record<string, any> & { seq: number; body: string };

/** A guest speaking only what the .proto says, numbering its frames 1, 2, 3, … */
async function connect(baseUrl: string) {
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/guest`, 'memballoon.v1');
  const frames: Decoded[] = [];
  let closed: { code: number; reason: string } | undefined;
  ws.on('message', (data: Buffer) =>
    frames.push(Envelope.toObject(Envelope.decode(data), { longs: Number, enums: String, defaults: true, oneofs: true }) as Decoded),
  );
  ws.on('close', (code, reason) => (closed = { code, reason: reason.toString('utf8') }));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let seq = 0;
  return {
    frames,
    send: (body: Record<string, unknown>) => ws.send(Envelope.encode(Envelope.fromObject({ protocolVersion: 1, seq: ++seq, ...body })).finish()),
    next: (body: string) =>
      waitFor(
        () => {
          const i = frames.findIndex((f) => f.body === body);
          return i >= 0 ? frames.splice(i, 1)[0] : undefined;
        },
        { what: `a ${body} frame`, timeoutMs: 15_000 },
      ),
    waitClosed: () => waitFor(() => closed, { what: 'the host to close the socket', timeoutMs: 15_000 }),
    close: () => ws.close(),
  };
}

const hello = (vmName: string, credential: string, totalMemoryMib: number, balloon: Record<string, number> = {}) => ({
  hello: {
    vmName,
    credential,
    agentVersion: 'proto-only-guest 0',
    facts: { pid: process.pid, totalMemoryMib, pageSizeBytes: 4096, chunkSizeMib: 1, capabilities: {}, domain: 'MEMORY_DOMAIN_PROCESS', hostname: 'g' },
    balloon,
  },
});

let host: HostHandle;
let data: ReturnType<typeof tempDataDir>;
let tokens: Map<string, string>;

beforeAll(async () => {
  data = tempDataDir();
  host = await startTestHost({ dataDir: data.dir, poolSizeMib: 2048 });
  tokens = createVms(host, ['wv-bye', 'wv-stats', 'wv-big'], 256);
});
afterAll(async () => {
  await host?.close();
  data?.remove();
});

it('a Goodbye with a reason this host does not know still ends the session on purpose: no Error, a normal close, the VM powered off', async () => {
  const g = await connect(host.url);
  g.send(hello('wv-bye', tokens.get('wv-bye')!, 256));
  await g.next('welcome');
  // An unknown domain in stats reads as unspecified too: the stats are counted.
  g.send({ memoryStats: { totalBytes: 256 * MIB, freeBytes: 100 * MIB, availableBytes: 120 * MIB, domain: 42 } });
  await waitFor(() => host.service.vmView('wv-bye').stats, { what: 'the stats to be counted' });
  g.send({ goodbye: { reason: 99, message: 'a reason from a later version' } });
  expect((await g.waitClosed()).code).toBe(1000);
  expect(g.frames.filter((f) => f.body === 'error')).toEqual([]);
  await waitFor(() => !host.service.isRunning('wv-bye'), { what: 'wv-bye to power off' });
});

it('stats whose free memory is above their total are refused (OUT_OF_RANGE) and the session goes on; available above the total is tolerated', async () => {
  const g = await connect(host.url);
  g.send(hello('wv-stats', tokens.get('wv-stats')!, 256));
  await g.next('welcome');
  g.send({ memoryStats: { totalBytes: 256 * MIB, freeBytes: 300 * MIB, availableBytes: 100 * MIB } });
  expect((await g.next('error')).error).toMatchObject({
    code: 'ERROR_CODE_OUT_OF_RANGE',
    message: expect.stringMatching(/memory_stats\.free_bytes is 314572800, above memory_stats\.total_bytes of 268435456/),
  });
  // It was not counted; a consistent one is, on the same session.
  expect(host.service.vmView('wv-stats').stats).toBeUndefined();
  g.send({ memoryStats: { totalBytes: 256 * MIB, freeBytes: 10 * MIB, availableBytes: 200 * MIB } });
  await waitFor(() => host.service.vmView('wv-stats').stats, { what: 'the good stats to be counted' });
  expect(host.service.vmView('wv-stats').stats).toMatchObject({ totalMib: 256, freeMib: 10, availableMib: 200 });
  // Available memory above the total is tolerated, as the .proto says (an agent's view through a lowered limit): shown at most the total.
  g.send({ memoryStats: { totalBytes: 256 * MIB, freeBytes: 10 * MIB, availableBytes: 300 * MIB } });
  await waitFor(() => (host.service.vmView('wv-stats').stats?.availableMib === 256 ? true : undefined), { what: 'the clamped stats to be counted' });
  expect(g.frames.filter((f) => f.body === 'error')).toEqual([]);
  expect(host.service.isRunning('wv-stats')).toBe(true);
  g.close();
  await waitFor(() => !host.service.isRunning('wv-stats'), { what: 'wv-stats to power off' });
});

it("a Hello whose balloon or target is above the VM's memory is refused (OUT_OF_RANGE, 4003) with what to do, and nothing is admitted", async () => {
  // The guest's own memory (1024 MiB) holds the balloon, so the frame itself decodes: the VM's setting (256 MiB) is what it breaks.
  for (const balloon of [
    { actualMib: 512, generation: 3, targetMib: 200 },
    { actualMib: 100, generation: 3, targetMib: 300 },
  ]) {
    const g = await connect(host.url);
    g.send(hello('wv-big', tokens.get('wv-big')!, 1024, balloon));
    const refused = await g.next('error');
    expect(refused.error.code).toBe('ERROR_CODE_OUT_OF_RANGE');
    expect(refused.error.message).toMatch(
      /hello\.balloon\.(actual|target)_mib is (512|300) MiB, above VM 'wv-big''s memory of 256 MiB.*modifyvm wv-big --memory/,
    );
    expect((await g.waitClosed()).code).toBe(4003);
    expect(host.service.isRunning('wv-big')).toBe(false);
    expect(host.service.hostView().pool.heldMib).toBe(0);
  }
  // Within the VM's memory the same guest is welcome.
  const g = await connect(host.url);
  g.send(hello('wv-big', tokens.get('wv-big')!, 1024, { actualMib: 200, generation: 3, targetMib: 200 }));
  await g.next('welcome');
  g.close();
  await waitFor(() => !host.service.isRunning('wv-big'), { what: 'wv-big to power off' });
});
