// The reference for the load benchmark: the least a host could do with the
// same wire traffic. It answers Hello with Welcome and turns
// `PUT /api/v1/vms/:name/balloon` into a SetBalloonTarget frame, with no
// registry, pool, policy or validation beyond decoding. Our host's figures
// are compared with this one's, measured in the same run.
import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { bodies, decodeFrame, FrameEncoder } from '@memballoon/protocol';

const guests = new Map<string, { ws: WebSocket; enc: FrameEncoder; generation: number }>();

const server = createServer((req, res) => {
  const m = /^\/api\/v1\/vms\/([^/]+)\/balloon$/.exec(req.url ?? '');
  if (req.method !== 'PUT' || !m?.[1]) {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const guest = guests.get(decodeURIComponent(m[1]!));
    if (!guest) {
      res.writeHead(404).end();
      return;
    }
    const { targetMib } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { targetMib: number };
    guest.generation += 1;
    guest.ws.send(guest.enc.encode(bodies.setBalloonTarget({ targetMib, generation: guest.generation })));
    res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
  });
});

const wss = new WebSocketServer({ server, path: '/v1/guest' });
wss.on('connection', (ws) => {
  const enc = new FrameEncoder();
  ws.on('message', (data: Buffer) => {
    try {
      const frame = decodeFrame(data);
      if (frame.body.case === 'hello') {
        guests.set(frame.body.value.vmName, { ws, enc, generation: 0 });
        ws.send(
          enc.encode(
            bodies.welcome({
              sessionId: frame.body.value.vmName,
              targetMib: 0,
              generation: 0,
              statsIntervalMs: 1000,
              heartbeatIntervalMs: 2000,
              protection: { floorMib: 0, deflateOnPressure: true },
              pageFusion: false,
            }),
          ),
        );
      }
    } catch {
      ws.close(1002);
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  if (addr && typeof addr === 'object') console.log(JSON.stringify({ url: `http://127.0.0.1:${addr.port}` }));
});
process.on('SIGTERM', () => process.exit(0));
