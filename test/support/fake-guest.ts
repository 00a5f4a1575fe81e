// A fake guest that speaks the wire protocol with @memballoon/protocol and
// ws, for tests of the host's session rules without a real balloon.
import { WebSocket } from 'ws';
import { bodies, decodeFrame, FrameEncoder, GUEST_PATH, GUEST_SUBPROTOCOL, type Body, type Frame, type Hello } from '@memballoon/protocol';
import { waitFor } from './wait.js';

/** What a fake guest saw. */
export interface FakeGuest {
  ws: WebSocket;
  frames: Frame[];
  closed: { code: number; reason: string } | undefined;
  send(body: Body): void;
  sendRaw(bytes: Uint8Array | string): void;
  /** Waits for a frame of a case (the first one not yet taken). */
  next<C extends Body['case']>(kind: C, timeoutMs?: number): Promise<Extract<Body, { case: C }>['value']>;
  waitClosed(timeoutMs?: number): Promise<{ code: number; reason: string }>;
  close(): void;
}

// Guest tokens of the VMs registered with registerVm, by name: helloFor
// presents them unless a test passes its own credential.
const tokens = new Map<string, string>();

/** Registers a VM on an in-process host and remembers its guest token for helloFor. */
export function registerVm(
  host: { service: { createVm(input: { name: unknown; memoryMib: unknown }): { token: string } } },
  input: { name: string; memoryMib: number },
): { token: string } {
  const vm = host.service.createVm(input);
  tokens.set(input.name, vm.token);
  return vm;
}

/** A Hello with sensible defaults (and the VM's token if registerVm made it). */
export function helloFor(vmName: string, memoryMib: number, extra: Partial<Hello> = {}): Body {
  return bodies.hello({
    vmName,
    credential: tokens.get(vmName) ?? '',
    agentVersion: 'fake-1',
    facts: {
      pid: process.pid,
      totalMemoryMib: memoryMib,
      pageSizeBytes: 4096,
      chunkSizeMib: 1,
      capabilities: { pin: false, pageFusion: false, deflateOnPressure: false },
      domain: 'process',
      hostname: 'fake',
    },
    balloon: { actualMib: 0, lockedMib: 0, generation: 0, targetMib: 0 },
    ...extra,
  });
}

/** Connects to the guest endpoint on `url` (with the subprotocol unless told otherwise). */
export async function connectFake(url: string, opts: { protocol?: string | null; autoPong?: boolean } = {}): Promise<FakeGuest> {
  const wsUrl = `${url.replace(/^http/, 'ws')}${GUEST_PATH}`;
  const wsOpts = { autoPong: opts.autoPong ?? true };
  const ws = opts.protocol === null ? new WebSocket(wsUrl, wsOpts) : new WebSocket(wsUrl, opts.protocol ?? GUEST_SUBPROTOCOL, wsOpts);
  const encoder = new FrameEncoder();
  const g: FakeGuest = {
    ws,
    frames: [],
    closed: undefined,
    send: (body) => ws.send(encoder.encode(body)),
    sendRaw: (bytes) => ws.send(bytes),
    async next(kind, timeoutMs = 10_000) {
      const f = await waitFor(
        () => {
          const i = g.frames.findIndex((x) => x.body.case === kind);
          return i >= 0 ? g.frames.splice(i, 1)[0] : undefined;
        },
        { timeoutMs, what: `a ${kind} frame` },
      );
      return f.body.value as never;
    },
    waitClosed: (timeoutMs = 10_000) => waitFor(() => g.closed, { timeoutMs, what: 'the host to close the socket' }),
    close: () => ws.close(),
  };
  ws.on('message', (data: Buffer) => g.frames.push(decodeFrame(new Uint8Array(data))));
  ws.on('close', (code, reason) => (g.closed = { code, reason: reason.toString('utf8') }));
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return g;
}
