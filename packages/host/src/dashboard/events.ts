// `GET /api/v1/events`: the host's state as server-sent events. Each event is a
// full snapshot (a few kB), so a client that missed some loses nothing and the
// page needs no merge logic. Changes are coalesced: however often the host
// changes, each client gets at most one snapshot per `minIntervalMs`, and one
// snapshot is serialised once for all clients.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendError } from '../api/http.js';
import { HostError } from '../errors.js';
import type { HostView, VmView } from '../service/views.js';
import type { HistoryEvent } from './history.js';

/** What one `snapshot` event carries. */
export interface SnapshotEvent {
  /** When the host took the snapshot (ms since the epoch). */
  atMs: number;
  host: HostView;
  vms: VmView[];
}

/** Settings of the event stream; the defaults suit a dashboard. */
export interface EventStreamOptions {
  /** Least time between two snapshots to the clients (default 250: at most 4 a second). */
  minIntervalMs?: number;
  /** How often an idle stream carries a comment, so proxies and browsers keep it open (default 15000). */
  keepAliveMs?: number;
  /** Most clients at once; more are answered 503 (default 64). */
  maxClients?: number;
  /** How long a browser waits before reconnecting, sent as `retry:` (default 2000). */
  retryMs?: number;
  /** The charts' history, sent once to each client as `event: history` before its first snapshot. */
  historyEvent?: () => HistoryEvent;
}

interface Client {
  res: ServerResponse;
  /** The socket's buffer is full: skip snapshots until it drains, then send the newest. */
  blocked: boolean;
  /** A snapshot was skipped while blocked. */
  stale: boolean;
}

/** Fans host snapshots out to SSE clients, coalescing changes and respecting backpressure. */
export class EventStream {
  readonly #snapshot: () => { host: HostView; vms: VmView[] };
  readonly #minIntervalMs: number;
  readonly #maxClients: number;
  readonly #retryMs: number;
  readonly #history: (() => HistoryEvent) | undefined;
  readonly #clients = new Set<Client>();
  readonly #keepAlive: NodeJS.Timeout;
  #timer: NodeJS.Timeout | undefined;
  #lastBroadcastMs = 0;
  #closed = false;

  constructor(snapshot: () => { host: HostView; vms: VmView[] }, options: EventStreamOptions = {}) {
    this.#snapshot = snapshot;
    this.#minIntervalMs = options.minIntervalMs ?? 250;
    this.#maxClients = options.maxClients ?? 64;
    this.#retryMs = options.retryMs ?? 2000;
    this.#history = options.historyEvent;
    this.#keepAlive = setInterval(() => this.#writeAll(': keep-alive\n\n'), options.keepAliveMs ?? 15_000);
    this.#keepAlive.unref();
  }

  /** Number of connected clients. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /** Serves one SSE client: headers, a snapshot at once, then changes until it goes away. */
  serve(req: IncomingMessage, res: ServerResponse): void {
    if (this.#closed || this.#clients.size >= this.#maxClients) {
      const message = this.#closed ? 'the host is shutting down' : 'too many dashboard clients';
      sendError(res, new HostError('unavailable', message), { 'retry-after': '5' });
      return;
    }
    const frame = this.#frame();
    if (frame === undefined) {
      sendError(res, new HostError('internal', 'could not take a snapshot of the host'));
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Reverse proxies (nginx) must not buffer the stream.
      'x-accel-buffering': 'no',
    });
    req.socket.setNoDelay(true);
    const client: Client = { res, blocked: false, stale: false };
    this.#clients.add(client);
    const drop = (): void => {
      this.#clients.delete(client);
    };
    res.on('close', drop);
    res.on('error', drop);
    res.on('drain', () => {
      client.blocked = false;
      if (client.stale) {
        client.stale = false;
        const latest = this.#frame();
        if (latest !== undefined) this.#write(client, latest);
      }
    });
    this.#write(client, `retry: ${this.#retryMs}\n\n${this.#historyFrame()}${frame}`);
  }

  /** Notes that the host changed: a snapshot goes out now, or once the interval since the last one has passed. */
  changed(): void {
    if (this.#closed || this.#timer !== undefined || this.#clients.size === 0) return;
    const waitMs = this.#lastBroadcastMs + this.#minIntervalMs - Date.now();
    if (waitMs <= 0) {
      // Still deferred by a tick, so a burst of synchronous changes makes one event.
      this.#timer = setTimeout(() => this.#broadcast(), 0);
    } else {
      this.#timer = setTimeout(() => this.#broadcast(), waitMs);
    }
  }

  /** Ends every stream and stops the timers; later clients get 503. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#keepAlive);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const client of this.#clients) client.res.end();
    this.#clients.clear();
  }

  #broadcast(): void {
    this.#timer = undefined;
    this.#lastBroadcastMs = Date.now();
    if (this.#clients.size === 0) return;
    const frame = this.#frame();
    if (frame === undefined) return;
    for (const client of this.#clients) {
      if (client.blocked) client.stale = true;
      else this.#write(client, frame);
    }
  }

  #writeAll(text: string): void {
    for (const client of this.#clients) if (!client.blocked) this.#write(client, text);
  }

  #write(client: Client, text: string): void {
    if (client.res.writableEnded || client.res.destroyed) return;
    if (!client.res.write(text)) client.blocked = true;
  }

  /** The `history` event, or nothing when there is none or it failed (the page then starts its charts empty). */
  #historyFrame(): string {
    if (!this.#history) return '';
    try {
      return `event: history\ndata: ${JSON.stringify(this.#history())}\n\n`;
    } catch {
      return '';
    }
  }

  /** One serialised `snapshot` event, or undefined when the host could not give a snapshot (never throws). */
  #frame(): string | undefined {
    try {
      const { host, vms } = this.#snapshot();
      const event: SnapshotEvent = { atMs: Date.now(), host, vms };
      // JSON.stringify never emits a raw newline, so one data: line is enough.
      return `event: snapshot\ndata: ${JSON.stringify(event)}\n\n`;
    } catch {
      return undefined;
    }
  }
}
