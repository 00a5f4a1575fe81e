// A workload for the toolkit's tests: holds N MiB of touched memory until SIGTERM.
const mib = Number(process.argv[2] ?? '0');
const held = [];
for (let i = 0; i < mib; i++) held.push(Buffer.alloc(1024 * 1024, 1));
process.on('SIGTERM', () => process.exit(0));
setInterval(() => held.length, 1000);
