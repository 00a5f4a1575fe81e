// A guest written from the .proto alone, as one in another language would be:
// plain `ws` and protobufjs loading memballoon.proto at run time, no
// @memballoon/* import on the guest's side. It follows the .proto's comments
// literally; where the host does something else, the comment is the contract.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { HostHandle } from '@memballoon/host';
import { tempDataDir } from './support/host.js';
import { createVms, startTestHost } from './support/in-process-host.js';
import { waitFor } from './support/wait.js';

const PROTO = fileURLToPath(new URL('../packages/protocol/proto/memballoon/v1/memballoon.proto', import.meta.url));
const Envelope = protobuf.loadSync(PROTO).lookupType('memballoon.v1.Envelope');

/** A decoded frame, as a guest in any language sees it: enum names, uint64 as numbers. */
type Decoded = Record<string, any> & { seq: number; body: string };

/** A guest speaking only what the .proto says. */
class ProtoGuest {
  readonly frames: Decoded[] = [];
  closed: { code: number; reason: string } | undefined;
  private seq = 0;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const env = Envelope.toObject(Envelope.decode(data), { longs: Number, enums: String, defaults: true, oneofs: true });
      this.frames.push(env as Decoded);
    });
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString('utf8') }));
  }

  /** Connects to base URL's guest endpoint with the subprotocol, as the .proto's Transport section says. */
  static async connect(baseUrl: string): Promise<ProtoGuest> {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/guest`, 'memballoon.v1');
    const g = new ProtoGuest(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return g;
  }

  /** Sends the next frame (seq 1, 2, 3, …) unless `seq` forces another number. */
  send(body: Record<string, unknown>, seq?: number): void {
    this.seq += 1;
    const env = Envelope.fromObject({ protocolVersion: 1, seq: seq ?? this.seq, ...body });
    this.ws.send(Envelope.encode(env).finish());
  }

  /** The first frame with this body not yet taken. */
  next(body: string): Promise<Decoded> {
    return waitFor(
      () => {
        const i = this.frames.findIndex((f) => f.body === body);
        return i >= 0 ? this.frames.splice(i, 1)[0] : undefined;
      },
      { what: `a ${body} frame`, timeoutMs: 15_000 },
    );
  }

  waitClosed(): Promise<{ code: number; reason: string }> {
    return waitFor(() => this.closed, { what: 'the host to close the socket', timeoutMs: 15_000 });
  }
}

const hello = (vmName: string, credential: string, totalMemoryMib: number) => ({
  hello: {
    vmName,
    credential,
    agentVersion: 'proto-only-guest 0',
    facts: {
      pid: process.pid,
      totalMemoryMib,
      pageSizeBytes: 4096,
      chunkSizeMib: 1,
      capabilities: { pin: false },
      domain: 'MEMORY_DOMAIN_PROCESS',
      hostname: 'proto-guest',
    },
    balloon: {},
  },
});

let host: HostHandle;
let data: ReturnType<typeof tempDataDir>;
let tokens: Map<string, string>;

beforeAll(async () => {
  data = tempDataDir();
  host = await startTestHost({ dataDir: data.dir, poolSizeMib: 2048 });
  tokens = createVms(host, ['pg-talk', 'pg-seq', 'pg-gap', 'pg-big'], 256);
});
afterAll(async () => {
  await host.close();
  data.remove();
});

/** Connects, says Hello and returns the guest with its Welcome. */
async function welcomed(name: string): Promise<{ g: ProtoGuest; welcome: Decoded }> {
  const g = await ProtoGuest.connect(host.url);
  g.send(hello(name, tokens.get(name) ?? '', 256));
  const welcome = await g.next('welcome');
  return { g, welcome };
}

describe('a guest from the .proto alone', () => {
  it('Hello, Welcome, a target, its status, refused frames that keep the session, Goodbye: frames numbered 1, 2, 3, 4 by the host', async () => {
    const { g, welcome } = await welcomed('pg-talk');
    expect(welcome.seq).toBe(1);
    expect(welcome.welcome.heartbeatIntervalMs).toBeGreaterThan(0);
    expect(welcome.welcome.statsIntervalMs).toBeGreaterThan(0);
    const setting = host.service.setBalloon('pg-talk', 64);
    const target = await g.next('setBalloonTarget');
    expect(target.setBalloonTarget.targetMib).toBe(64);
    expect(target.setBalloonTarget.generation).toBeGreaterThan(welcome.welcome.generation);
    g.send({
      balloonStatus: {
        generation: target.setBalloonTarget.generation,
        targetMib: 64,
        actualMib: 64,
        state: 'BALLOON_STATE_STEADY',
        lock: 'LOCK_STATE_DISABLED',
      },
    });
    await setting;
    await waitFor(() => host.service.vmView('pg-talk').balloon?.actualMib === 64, { what: "the host to count pg-talk's status" });
    expect(host.service.hostView().pool.reclaimedMib).toBe(64);
    // Out of range only: refused with an Error that names the bound broken, the session goes on (the .proto's Errors section).
    g.send({
      balloonStatus: { generation: target.setBalloonTarget.generation, targetMib: 64, actualMib: 64, lockedMib: 70, state: 'BALLOON_STATE_STEADY' },
    });
    const lockedAbove = await g.next('error');
    expect(lockedAbove.error).toMatchObject({ code: 'ERROR_CODE_OUT_OF_RANGE', message: 'balloon_status.locked_mib is 70 MiB, above actual_mib of 64 MiB' });
    g.send({ memoryStats: { totalBytes: 256 * 1024 * 1024, psiSomeAvg10Percent: Number.NaN } });
    const refused = await g.next('error');
    expect(refused.error.code).toBe('ERROR_CODE_OUT_OF_RANGE');
    g.send({ goodbye: { reason: 'GOODBYE_REASON_SHUTDOWN' } });
    const closed = await g.waitClosed();
    expect(closed.code).toBe(1000);
    expect([welcome.seq, target.seq, lockedAbove.seq, refused.seq]).toEqual([1, 2, 3, 4]);
    await waitFor(() => !host.service.isRunning('pg-talk'), { what: 'pg-talk to power off' });
  });

  it('a gap in seq is OUT_OF_ORDER (4015), also a jump past 2^53 that no sender can reach', async () => {
    for (const [name, seq] of [
      ['pg-gap', 5],
      ['pg-seq', 2 ** 60],
    ] as const) {
      const { g } = await welcomed(name);
      g.send({ goodbye: { reason: 'GOODBYE_REASON_SHUTDOWN' } }, seq);
      const e = await g.next('error');
      expect(e.error.code).toBe('ERROR_CODE_OUT_OF_ORDER');
      expect((await g.waitClosed()).code).toBe(4015);
      await waitFor(() => !host.service.isRunning(name), { what: `${name} to power off` });
    }
  });

  it("a frame above the host's limit (300 KiB, below the 1 MiB of every frame) ends the session as the .proto says: 1009, no Error", async () => {
    const proto = readFileSync(PROTO, 'utf8');
    expect(proto).toMatch(/closes the\n\/\/\s+socket with 1009/);
    const { g } = await welcomed('pg-big');
    g.send({
      sharedRegion: { regionId: 1, name: 'r', version: '1', sizeBytes: 4096, pageSizeBytes: 4096, pageHashes: new Uint8Array(300 * 1024), last: true },
    });
    expect((await g.waitClosed()).code).toBe(1009);
    expect(g.frames.filter((f) => f.body === 'error')).toEqual([]);
    await waitFor(() => !host.service.isRunning('pg-big'), { what: 'pg-big to power off' });
  });
});
