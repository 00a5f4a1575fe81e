// A pino logger that writes to memory, for tests that check what was logged.
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';

/** A logger at `level` and what it wrote: the raw text, or each line parsed. */
export function captureLogger(level = 'info'): { logger: Logger; lines: () => Array<Record<string, unknown>>; text: () => string } {
  let written = '';
  const logger = pino({ level }, new Writable({ write: (chunk, _enc, cb) => ((written += String(chunk)), cb()) }));
  return {
    logger,
    lines: () =>
      written
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => written,
  };
}
