// One worker thread of the load driver: it holds a slice of the simulated
// guests (real protocol over real WebSockets), sends their stats, answers
// each SetBalloonTarget with a BalloonStatus, and tells the main thread when
// each target arrived. At 5,000 guests one thread could not keep up with
// its own sockets, and its lateness would have shown up as the host's.
//
// Times cross threads as performance.timeOrigin + performance.now(): the
// same clock in every thread of the process.
import { parentPort, workerData } from 'node:worker_threads';
import { WebSocket } from 'ws';
import { bodies, decodeFrame, FrameEncoder } from '@memballoon/protocol';

/** What the main thread gives each worker. */
export interface GuestWorkerData {
  url: string;
  /** Indices of this worker's guests (names are load-NNNNN). */
  first: number;
  count: number;
  memoryMib: number;
  statsIntervalMs: number;
}

/** Messages a worker posts. */
export type GuestWorkerMessage =
  | { type: 'ready' }
  | { type: 'targets'; names: string[]; atMs: number[] }
  | { type: 'failed'; message: string }
  | { type: 'stopped' };

/** The name of guest `i`, as the main thread addresses it in PUTs. */
export function loadGuestName(i: number): string {
  return `load-${String(i).padStart(5, '0')}`;
}

interface Guest {
  ws: WebSocket;
  enc: FrameEncoder;
}

const nowAbsMs = (): number => performance.timeOrigin + performance.now();

async function main(port: NonNullable<typeof parentPort>, data: GuestWorkerData): Promise<void> {
  const wsUrl = `${data.url.replace(/^http/, 'ws')}/v1/guest`;
  // Arrivals are posted in batches, one per turn of the event loop.
  let names: string[] = [];
  let atMs: number[] = [];
  const flush = (): void => {
    if (names.length === 0) return;
    port.postMessage({ type: 'targets', names, atMs } satisfies GuestWorkerMessage);
    names = [];
    atMs = [];
  };
  const connectOne = (i: number): Promise<Guest> =>
    new Promise<Guest>((resolve, reject) => {
      const name = loadGuestName(i);
      const ws = new WebSocket(wsUrl, 'memballoon.v1');
      const guest: Guest = { ws, enc: new FrameEncoder() };
      const status = (targetMib: number, generation: number): void =>
        ws.send(guest.enc.encode(bodies.balloonStatus({ generation, targetMib, actualMib: targetMib, lockedMib: targetMib, state: 'steady', lock: 'locked' })));
      ws.on('open', () => {
        ws.send(
          guest.enc.encode(
            bodies.hello({
              vmName: name,
              credential: '',
              agentVersion: 'load-driver',
              facts: {
                pid: process.pid,
                totalMemoryMib: data.memoryMib,
                pageSizeBytes: 4096,
                chunkSizeMib: 1,
                capabilities: { pin: true, pageFusion: false, deflateOnPressure: true },
                domain: 'process',
                hostname: 'load',
              },
              balloon: { actualMib: 0, lockedMib: 0, generation: 0, targetMib: 0 },
            }),
          ),
        );
      });
      ws.on('message', (raw: Buffer) => {
        const frame = decodeFrame(raw);
        if (frame.body.case === 'welcome') {
          status(frame.body.value.targetMib, frame.body.value.generation);
          resolve(guest);
        } else if (frame.body.case === 'setBalloonTarget') {
          if (names.length === 0) setImmediate(flush);
          names.push(name);
          atMs.push(nowAbsMs());
          status(frame.body.value.targetMib, frame.body.value.generation);
        } else if (frame.body.case === 'error') {
          reject(new Error(`${name}: ${frame.body.value.code}: ${frame.body.value.message}`));
        }
      });
      ws.on('error', reject);
    });

  const guests: Guest[] = [];
  // In batches: the host admits a bounded number of connections at once.
  for (let i = 0; i < data.count; i += 50) {
    const batch: Array<Promise<Guest>> = [];
    for (let j = i; j < Math.min(data.count, i + 50); j++) batch.push(connectOne(data.first + j));
    guests.push(...(await Promise.all(batch)));
  }

  // Stats every statsIntervalMs, spread over the interval in ten slices.
  const memBytes = data.memoryMib * 1024 * 1024;
  let slice = 0;
  const statsTimer = setInterval(() => {
    for (let i = slice; i < guests.length; i += 10) {
      const g = guests[i]!;
      g.ws.send(g.enc.encode(bodies.memoryStats({ totalBytes: memBytes, freeBytes: memBytes / 2, availableBytes: memBytes / 2, domain: 'process' })));
    }
    slice = (slice + 1) % 10;
  }, data.statsIntervalMs / 10);

  port.on('message', (msg: { type: 'stop' }) => {
    if (msg.type !== 'stop') return;
    clearInterval(statsTimer);
    flush();
    for (const g of guests) g.ws.close();
    port.postMessage({ type: 'stopped' } satisfies GuestWorkerMessage);
    port.close();
  });
  port.postMessage({ type: 'ready' } satisfies GuestWorkerMessage);
}

if (parentPort) {
  const port = parentPort;
  main(port, workerData as GuestWorkerData).catch((err: unknown) => {
    port.postMessage({ type: 'failed', message: err instanceof Error ? err.message : String(err) } satisfies GuestWorkerMessage);
  });
}
