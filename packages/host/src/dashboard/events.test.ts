import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { demoSnapshot } from '../metrics/test-fixtures.js';
import { EventStream, type SnapshotEvent } from './events.js';

/** A stand-in for a ServerResponse that records what is written and can report a full buffer. */
class FakeResponse extends EventEmitter {
  status = 0;
  headers: Record<string, unknown> = {};
  chunks: string[] = [];
  full = false;
  writableEnded = false;
  destroyed = false;
  writeHead(status: number, headers: Record<string, unknown>): this {
    this.status = status;
    this.headers = headers;
    return this;
  }
  write(text: string): boolean {
    this.chunks.push(text);
    return !this.full;
  }
  end(text?: string): void {
    if (text) this.chunks.push(text);
    this.writableEnded = true;
  }
  /** The `snapshot` events written so far. */
  snapshots(): SnapshotEvent[] {
    return this.chunks
      .join('')
      .split('\n\n')
      .filter((block) => block.includes('event: snapshot'))
      .map((block) => JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as SnapshotEvent);
  }
}

const fakeReq = { socket: { setNoDelay: () => undefined } } as unknown as IncomingMessage;

function connect(stream: EventStream): FakeResponse {
  const res = new FakeResponse();
  stream.serve(fakeReq, res as unknown as ServerResponse);
  return res;
}

describe('EventStream', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends a snapshot on connect, with SSE headers and a retry hint', () => {
    const stream = new EventStream(demoSnapshot, { retryMs: 1500 });
    const res = connect(stream);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(res.chunks.join('')).toMatch(/^retry: 1500\n\n/);
    const [first] = res.snapshots();
    expect(first?.vms.map((vm) => vm.name)).toContain('vm-large');
    expect(first?.host.pool.sizeMib).toBe(1536);
    stream.close();
  });

  it('coalesces a burst of changes into one event, and at most one per interval', () => {
    let snap = demoSnapshot();
    const stream = new EventStream(() => snap, { minIntervalMs: 250 });
    const res = connect(stream);
    for (let i = 1; i <= 50; i++) {
      snap = demoSnapshot();
      snap.host.pool.freeMib = i;
      stream.changed();
    }
    vi.advanceTimersByTime(0);
    expect(res.snapshots().map((e) => e.host.pool.freeMib)).toEqual([78, 50]);

    // Within the interval: nothing more goes out until it has passed, then only the newest.
    for (let i = 51; i <= 60; i++) {
      snap = demoSnapshot();
      snap.host.pool.freeMib = i;
      stream.changed();
      vi.advanceTimersByTime(10);
    }
    expect(res.snapshots()).toHaveLength(2);
    vi.advanceTimersByTime(250);
    expect(res.snapshots().map((e) => e.host.pool.freeMib)).toEqual([78, 50, 60]);
    stream.close();
  });

  it('sends keep-alive comments while idle', () => {
    const stream = new EventStream(demoSnapshot, { keepAliveMs: 1000 });
    const res = connect(stream);
    vi.advanceTimersByTime(2500);
    expect(res.chunks.filter((c) => c === ': keep-alive\n\n')).toHaveLength(2);
    stream.close();
  });

  it('holds back a client whose buffer is full and sends it the newest snapshot on drain', () => {
    let snap = demoSnapshot();
    const stream = new EventStream(() => snap, { minIntervalMs: 10 });
    const res = connect(stream);
    res.full = true;
    snap = demoSnapshot();
    snap.host.pool.freeMib = 1;
    stream.changed();
    vi.advanceTimersByTime(20);
    expect(res.snapshots()).toHaveLength(2); // written, but the buffer is now full
    for (const freeMib of [2, 3]) {
      snap = demoSnapshot();
      snap.host.pool.freeMib = freeMib;
      stream.changed();
      vi.advanceTimersByTime(20);
    }
    expect(res.snapshots()).toHaveLength(2);
    res.full = false;
    res.emit('drain');
    expect(res.snapshots().map((e) => e.host.pool.freeMib)).toEqual([78, 1, 3]);
    stream.close();
  });

  it('forgets a client that closed, and ends every stream on close', () => {
    const stream = new EventStream(demoSnapshot);
    const gone = connect(stream);
    const staying = connect(stream);
    expect(stream.clientCount).toBe(2);
    gone.emit('close');
    expect(stream.clientCount).toBe(1);
    stream.close();
    expect(staying.writableEnded).toBe(true);
    expect(stream.clientCount).toBe(0);
    expect(connect(stream).status).toBe(503);
  });

  it('refuses clients beyond the limit, and answers 500 when the host cannot give a snapshot', () => {
    const stream = new EventStream(demoSnapshot, { maxClients: 1 });
    connect(stream);
    expect(connect(stream).status).toBe(503);
    stream.close();
    const broken = new EventStream(() => {
      throw new Error('boom');
    });
    expect(connect(broken).status).toBe(500);
    broken.close();
  });
});
