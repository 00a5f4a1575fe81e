// The service under test in the examples: an HTTP server that keeps a cache of
// 1 MiB entries and answers GET /health with its size. It listens on a free
// port and writes that port into the file named by its first argument.
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

const cache = [];
const server = createServer((req, res) => {
  if (req.url === '/fill') {
    // Grow the cache by 8 MiB of touched memory.
    for (let i = 0; i < 8; i++) cache.push(Buffer.alloc(1024 * 1024, 7));
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ ok: true, cacheMib: cache.length }));
});
server.listen(0, '127.0.0.1', () => writeFileSync(process.argv[2], String(server.address().port)));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
