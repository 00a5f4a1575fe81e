// Fuzzing the guest endpoint of a real balloon-host process: exactly 12,000
// malformed, truncated, bit-flipped, oversized, random and out-of-order
// frames, text frames, Hellos with bad fields or wrong tokens, and exactly
// 200 bad handshakes (wrong path, wrong subprotocol, garbage HTTP), while one
// well-behaved guest keeps receiving and applying targets. The host stays up,
// its VmRSS stays bounded, the errors are counted in /metrics, and the good
// guest sees every target (generations contiguous). Seeded, so a failure can
// be replayed with FUZZ_SEED.
//
// The test counts work, not time: it sends exactly FRAMES frames whatever
// the machine's load (a busy machine makes it slower, never shorter), and
// the deadline is only a guard against a host that stops answering.
import { connect } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { bodies, decodeFrame, encodeFrame, FrameEncoder, GUEST_PATH, GUEST_SUBPROTOCOL, type Body } from '@memballoon/protocol';
import type { VmView } from '@memballoon/host';
import { adminTokenOf, apiGet, ctlJson, spawnHost, stopAll, tempDataDir, type StartedHost } from './support/host.js';
import { connectFake, helloFor } from './support/fake-guest.js';
import { isAlive, vmRssMib } from './support/proc.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const FRAMES = 12_000;
const BAD_HANDSHAKES = 200;
const WORKERS = 8;
// A guard, not a budget: the work takes seconds on an idle machine.
const DEADLINE_MS = 240_000;
const FUZZ_VMS = ['fuzz-0', 'fuzz-1', 'fuzz-2', 'fuzz-3'];

let data: ReturnType<typeof tempDataDir>;
let host: StartedHost;
const tokens = new Map<string, string>();

/** xorshift32: small, seeded, good enough to pick cases. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

beforeAll(async () => {
  console.log(`fuzz-host: seed ${SEED} (replay with FUZZ_SEED=${SEED})`);
  data = tempDataDir();
  host = await spawnHost({ dataDir: data.dir, poolSizeMib: 4096, extra: ['--log-level', 'info', '--policy-interval-ms', '0'] });
  for (const name of ['good', ...FUZZ_VMS]) {
    const vm = await ctlJson<VmView & { token: string }>(host.url, 'createvm', '--name', name, '--memory', '256');
    tokens.set(name, vm.token);
  }
}, 60_000);
afterAll(async () => {
  await cleanUp(stopAll, () => data.remove());
});

const wsUrl = () => `${host.url.replace(/^http/, 'ws')}${GUEST_PATH}`;
const auth = () => ({ authorization: `Bearer ${adminTokenOf(host.url)}` });

/** The good guest: applies every target at once and reports it, recording the generations it saw. */
async function goodGuest(): Promise<{ generations: number[]; welcomeGeneration: number; ws: WebSocket }> {
  const ws = new WebSocket(wsUrl(), GUEST_SUBPROTOCOL);
  const encoder = new FrameEncoder();
  const g = { generations: [] as number[], welcomeGeneration: -1, ws };
  ws.on('error', () => {});
  ws.on('message', (data: Buffer) => {
    const f = decodeFrame(new Uint8Array(data));
    if (f.body.case === 'welcome') g.welcomeGeneration = f.body.value.generation;
    if (f.body.case === 'setBalloonTarget') {
      const { targetMib, generation } = f.body.value;
      g.generations.push(generation);
      ws.send(encoder.encode(bodies.balloonStatus({ generation, targetMib, actualMib: targetMib, lockedMib: targetMib, state: 'steady' })));
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(encoder.encode(helloFor('good', 256, { credential: tokens.get('good')! })));
  await waitFor(() => g.welcomeGeneration >= 0, { what: 'the good guest to be welcomed' });
  return g;
}

/** One fuzz case: the frames (binary or text) a connection sends, and whether it first says a valid Hello. */
interface Case {
  hello: string | undefined;
  frames: Array<Uint8Array | string>;
}

function makeCase(rand: () => number): Case {
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  const validBodies = (): Body[] => [
    helloFor(FUZZ_VMS[int(FUZZ_VMS.length)]!, 256, { credential: 'x' }),
    bodies.balloonStatus({ generation: int(5), targetMib: int(300), actualMib: int(300), lockedMib: 0, state: 'steady' }),
    bodies.memoryStats({ totalBytes: int(2 ** 40), freeBytes: int(2 ** 40) }),
    bodies.goodbye('restart', 'fuzz'),
    bodies.welcome({
      sessionId: 'x',
      targetMib: 1,
      generation: 1,
      statsIntervalMs: 1,
      heartbeatIntervalMs: 1,
      protection: { floorMib: 0, deflateOnPressure: false },
      pageFusion: false,
    }),
    bodies.setBalloonTarget({ targetMib: 5, generation: 9 }),
    bodies.error('internal', 'fuzz'),
    bodies.sharedRegionRemoved({ regionId: int(10) }),
  ];
  const pick = () => validBodies()[int(8)]!;
  const frames: Array<Uint8Array | string> = [];
  const n = 1 + int(12);
  // After a valid Hello the host has a session to confuse: out-of-order and advisory garbage.
  const authenticated = rand() < 0.35;
  let seq = authenticated ? 1 : 0;
  for (let i = 0; i < n; i++) {
    const kind = int(11);
    switch (kind) {
      case 0: // random bytes
        frames.push(bytes(int(600)));
        break;
      case 1: {
        // a valid frame, truncated
        const f = encodeFrame(++seq, pick());
        frames.push(f.subarray(0, int(f.length)));
        break;
      }
      case 2: {
        // a valid frame with bits flipped
        const f = encodeFrame(++seq, pick());
        for (let k = 0; k < 1 + int(4); k++) {
          const at = int(f.length);
          f[at] = (f[at] ?? 0) ^ (1 << int(8));
        }
        frames.push(f);
        break;
      }
      case 3: // out of order: a sequence number already used, or zero
        frames.push(encodeFrame(rand() < 0.5 ? 0 : Math.max(0, seq - int(3)), pick()));
        break;
      case 4: {
        // another protocol version
        const f = encodeFrame(++seq, pick());
        if (f[0] === 0x08) f[1] = 2 + int(100);
        frames.push(f);
        break;
      }
      case 5: // a text frame
        frames.push(rand() < 0.5 ? 'hello?' : String.fromCharCode(...bytes(int(200))));
        break;
      case 6: // oversized (above maxPayload), rarely: they are big
        frames.push(int(20) === 0 ? bytes(300 * 1024) : bytes(int(64)));
        break;
      case 7: // a Hello with absurd or hostile fields
        frames.push(
          encodeFrame(
            ++seq,
            helloFor(['', ' x', 'a'.repeat(65), 'ok\u0000', 'fuzz-0', 'nobody'][int(6)]!, [0, 2 ** 31, 256][int(3)]!, {
              credential: ['', 'wrong', 'x'.repeat(300)][int(3)]!,
              balloon: { actualMib: int(2 ** 30), lockedMib: int(2 ** 30), generation: int(2 ** 31), targetMib: int(2 ** 30) },
            }),
          ),
        );
        break;
      case 8: // a message a guest may not send, in sequence
        frames.push(encodeFrame(++seq, [validBodies()[4]!, validBodies()[5]!][int(2)]!));
        break;
      case 9: // advisory nonsense in sequence: statuses above the memory, generations never sent
        frames.push(
          encodeFrame(
            ++seq,
            bodies.balloonStatus({ generation: int(1000), targetMib: int(100_000), actualMib: int(100_000), lockedMib: int(100_000), state: 'inflating' }),
          ),
        );
        break;
      default: // empty frame
        frames.push(new Uint8Array(0));
    }
  }
  return { hello: authenticated ? FUZZ_VMS[int(FUZZ_VMS.length)] : undefined, frames };
}

/**
 * Sends at most `budget` frames of one case over one connection, then closes
 * it; resolves with how many frames went out, once the socket is closed. A
 * frame counts as sent once it was handed to the open socket (the host may
 * close the socket after a fatal one: the rest of the case is not sent, and
 * not counted). No timer decides how much is sent.
 */
function runCase(c: Case, budget: number): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl(), GUEST_SUBPROTOCOL);
    let sent = 0;
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      ws.terminate();
      resolve(sent);
    };
    // Only a guard against a socket that neither opens nor closes.
    const guard = setTimeout(done, 30_000);
    ws.on('error', () => {});
    ws.on('close', done);
    ws.on('unexpected-response', done);
    ws.on('open', () => {
      const frames: Array<Uint8Array | string> = c.hello
        ? [encodeFrame(1, helloFor(c.hello, 256, { credential: tokens.get(c.hello)! })), ...c.frames]
        : c.frames;
      for (const f of frames.slice(0, budget)) {
        if (ws.readyState !== ws.OPEN) break;
        ws.send(f, { binary: typeof f !== 'string' });
        sent++;
      }
      // A close handshake after the frames: the host reads them all first.
      ws.close();
    });
  });
}

/** Bad handshakes over raw TCP; resolves when the host has answered or closed. */
function badHandshake(rand: () => number): Promise<void> {
  const port = Number(new URL(host.url).port);
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const requests = [
    `GET /v1/nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: memballoon.v1\r\n\r\n`,
    `GET /v1/guest HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n`,
    `GET /v1/guest HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    `GET /v1/guest HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 99\r\n\r\n`,
    '\u0000\u00ff\u0013garbage garbage\r\n\r\n',
    'GET /v1/guest HTTP/1.1\r\nHost: x\r\nUpgr',
    `POST /v1/guest HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nabc`,
    `GET /${'a'.repeat(20_000)} HTTP/1.1\r\n\r\n`,
  ];
  const req = requests[Math.floor(rand() * requests.length)]!;
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const end = () => {
      clearTimeout(timer);
      s.destroy();
      resolve();
    };
    // The host answers or closes each of these; the guard only ends a socket it keeps open.
    const timer = setTimeout(end, 30_000);
    s.on('error', end);
    s.on('close', end);
    s.on('data', end);
    // end(), not write(): the host sees the request end, so it answers or
    // closes at once even when the request is cut short.
    s.on('connect', () => s.end(req));
  });
}

async function protocolErrorsByCode(): Promise<Map<string, number>> {
  const text = await (await fetch(`${host.url}/metrics`, { headers: auth() })).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^memballoon_protocol_errors_total\{code="([a-z_]+)"\} (\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

it(
  'stays up, bounded and counting under a flood of bad frames, and the good guest misses no target',
  async () => {
    const good = await goodGuest();
    const rssStartMib = vmRssMib(host.pid);
    let maxRssMib = rssStartMib;
    let framesSent = 0;
    let handshakes = 0;
    let fuzzing = true;

    // Targets for the good guest all along, each one acknowledged by the API.
    let targetsSet = 0;
    const controller = (async () => {
      for (let i = 0; fuzzing; i++) {
        const res = await fetch(`${host.url}/api/v1/vms/good/balloon`, {
          method: 'PUT',
          headers: { ...auth(), 'content-type': 'application/json' },
          body: JSON.stringify({ targetMib: 10 + (i % 90) }),
        });
        expect(res.status).toBe(202);
        await res.arrayBuffer();
        targetsSet++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const sampler = (async () => {
      while (fuzzing) {
        maxRssMib = Math.max(maxRssMib, vmRssMib(host.pid));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    // Exactly FRAMES frames and BAD_HANDSHAKES handshakes, shared by the
    // workers: a worker reserves the frames of its next case before sending
    // and gives back what the host did not let it send.
    const deadlineMs = Date.now() + DEADLINE_MS;
    let framesReserved = 0;
    let handshakesReserved = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        const rand = prng(SEED * 31 + w);
        for (;;) {
          if (Date.now() > deadlineMs)
            throw new Error(
              `fuzz-host: only ${framesSent} of ${FRAMES} frames and ${handshakes} of ${BAD_HANDSHAKES} handshakes went out in ${DEADLINE_MS} ms`,
            );
          if (handshakesReserved < BAD_HANDSHAKES && (rand() < 0.1 || framesReserved >= FRAMES)) {
            handshakesReserved++;
            await badHandshake(rand);
            handshakes++;
            continue;
          }
          if (framesReserved >= FRAMES) {
            if (framesSent >= FRAMES && handshakesReserved >= BAD_HANDSHAKES) return;
            // Another worker holds the last reservation; it may give some back.
            await new Promise((r) => setTimeout(r, 10));
            continue;
          }
          const c = makeCase(rand);
          const budget = Math.min(c.frames.length + (c.hello ? 1 : 0), FRAMES - framesReserved);
          framesReserved += budget;
          const sent = await runCase(c, budget);
          framesSent += sent;
          framesReserved -= budget - sent;
        }
      }),
    );
    fuzzing = false;
    await Promise.all([controller, sampler]);
    console.log(
      `fuzz-host: ${framesSent} frames and ${handshakes} bad handshakes; host VmRSS ${rssStartMib} → max ${maxRssMib} MiB; ${targetsSet} targets to the good guest`,
    );

    expect(framesSent).toBe(FRAMES);
    expect(handshakes).toBe(BAD_HANDSHAKES);
    // The host is up and answers.
    expect(isAlive(host.pid)).toBe(true);
    expect((await apiGet<{ vmsRunning: number }>(host.url, '/host')).vmsRunning).toBeGreaterThanOrEqual(1);
    // Memory stays bounded (generous: a flood must not grow it without end).
    expect(maxRssMib).toBeLessThan(rssStartMib + 200);
    // Errors were counted, by their codes.
    const errors = await protocolErrorsByCode();
    const total = [...errors.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(1_000);
    for (const code of ['malformed_frame', 'unexpected_message', 'out_of_order', 'unsupported_version', 'frame_too_large'])
      expect(errors.get(code) ?? 0, code).toBeGreaterThan(0);
    // The good guest: every target, once, in order.
    const view = await waitFor(
      async () => {
        const v = await apiGet<VmView>(host.url, '/vms/good');
        return v.balloon && good.generations.at(-1) === v.balloon.generation ? v : undefined;
      },
      { what: 'the good guest to have the newest target' },
    );
    expect(view.state).toBe('running');
    expect(good.generations).toHaveLength(targetsSet);
    good.generations.forEach((g, i) => expect(g).toBe(good.welcomeGeneration + 1 + i));
    good.ws.close();
    // Nothing leaked (pending-Hello places, sessions): a fresh guest still gets in.
    await waitFor(
      async () => {
        const g = await connectFake(host.url);
        try {
          g.send(helloFor('fuzz-0', 256, { credential: tokens.get('fuzz-0')! }));
          return await g.next('welcome', 2_000);
        } finally {
          g.close();
        }
      },
      { what: 'a fresh guest to be welcomed after the flood' },
    );
  },
  DEADLINE_MS + 60_000,
);
