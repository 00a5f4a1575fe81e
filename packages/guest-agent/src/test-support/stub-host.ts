// A small stand-in for the host, for the agent's tests: a WebSocket server on
// port 0 that records every frame a guest sends and lets the test answer.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { FrameEncoder, GUEST_SUBPROTOCOL, bodies, decodeFrame, type Body, type BodyCase, type BodyOf, type Frame, type Welcome } from '@memballoon/protocol';

/** One guest connection to the stub host. */
export interface StubConnection {
  ws: WebSocket;
  frames: Frame[];
  encoder: FrameEncoder;
  closed: boolean;
  closeCode: number;
}

/** A stub host listening on loopback. */
export class StubHost {
  readonly connections: StubConnection[] = [];
  private readonly wss: WebSocketServer;

  private constructor(wss: WebSocketServer) {
    this.wss = wss;
    wss.on('connection', (ws) => {
      const conn: StubConnection = { ws, frames: [], encoder: new FrameEncoder(), closed: false, closeCode: 0 };
      this.connections.push(conn);
      ws.on('message', (data) => conn.frames.push(decodeFrame(new Uint8Array(data as Buffer))));
      ws.on('close', (code) => {
        conn.closed = true;
        conn.closeCode = code;
      });
    });
  }

  /** Starts a stub host on 127.0.0.1, port 0. */
  static async start(): Promise<StubHost> {
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      path: '/v1/guest',
      handleProtocols: (protocols) => (protocols.has(GUEST_SUBPROTOCOL) ? GUEST_SUBPROTOCOL : false),
    });
    await once(wss, 'listening');
    return new StubHost(wss);
  }

  /** The base URL agents are given. */
  get url(): string {
    return `http://127.0.0.1:${(this.wss.address() as AddressInfo).port}`;
  }

  /** The newest connection, if any. */
  get latest(): StubConnection | undefined {
    return this.connections.at(-1);
  }

  /** Sends a body on a connection. */
  send(conn: StubConnection, body: Body): void {
    conn.ws.send(conn.encoder.encode(body), { binary: true });
  }

  /** Sends a Welcome with defaults for what is not given. */
  welcome(conn: StubConnection, w: Partial<Welcome> = {}): void {
    this.send(
      conn,
      bodies.welcome({
        sessionId: `s${this.connections.indexOf(conn) + 1}`,
        targetMib: 0,
        generation: 0,
        statsIntervalMs: 1000,
        heartbeatIntervalMs: 2000,
        protection: { floorMib: 0, deflateOnPressure: true },
        pageFusion: false,
        ...w,
      }),
    );
  }

  /** Bodies of a given case received on a connection. */
  received<C extends BodyCase>(conn: StubConnection, kind: C): BodyOf<C>[] {
    return conn.frames.filter((f) => f.body.case === kind).map((f) => f.body.value as BodyOf<C>);
  }

  /** Stops the server and drops every connection. */
  async close(): Promise<void> {
    for (const c of this.connections) c.ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
