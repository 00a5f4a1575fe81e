import type { IncomingMessage } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { jsonDepth, MAX_BODY_BYTES, MAX_JSON_DEPTH, readJson } from './http.js';

const body = (...chunks: string[]): IncomingMessage => Readable.from(chunks.map((c) => Buffer.from(c, 'utf8'))) as unknown as IncomingMessage;

describe('jsonDepth', () => {
  it('counts nesting without recursion, and not brackets inside strings', () => {
    expect(jsonDepth('{}')).toBe(1);
    expect(jsonDepth('{"a":[1,{"b":[]}]}')).toBe(4);
    expect(jsonDepth('{"a":"[[[[{{{{\\"]]"}')).toBe(1);
    expect(jsonDepth('"plain"')).toBe(0);
    const deep = 200_000;
    expect(jsonDepth('['.repeat(deep) + ']'.repeat(deep))).toBe(deep);
    expect(MAX_JSON_DEPTH).toBeGreaterThanOrEqual(4);
  });
});

describe('readJson', () => {
  it('reads an object across chunks, and an empty body as {}', async () => {
    await expect(readJson(body('{"target', 'Mib": 12', '8, "n": "\u00e9"}'))).resolves.toEqual({ targetMib: 128, n: 'é' });
    await expect(readJson(body())).resolves.toEqual({});
    await expect(readJson(body('  \n'))).resolves.toEqual({});
  });

  it('refuses what is not one JSON object, too deep or too large, with invalid_argument', async () => {
    for (const [text, message] of [
      ['[1]', 'must be a JSON object'],
      ['null', 'must be a JSON object'],
      ['{"a":', 'not valid JSON'],
      ['['.repeat(MAX_JSON_DEPTH + 1) + ']'.repeat(MAX_JSON_DEPTH + 1), 'nested deeper'],
    ] as const) {
      await expect(readJson(body(text))).rejects.toMatchObject({ code: 'invalid_argument', message: expect.stringContaining(message) });
    }
    const big = 'x'.repeat(16 * 1024);
    await expect(readJson(body('{"a":"', big, big, big, big, big, '"}'))).rejects.toMatchObject({
      code: 'invalid_argument',
      message: `the request body is larger than ${MAX_BODY_BYTES} bytes`,
    });
  });

  it('refuses a body whose stream fails', async () => {
    const stream = new PassThrough();
    const read = readJson(stream as unknown as IncomingMessage);
    stream.write('{"a":');
    stream.destroy(new Error('aborted'));
    await expect(read).rejects.toMatchObject({ code: 'invalid_argument', message: expect.stringContaining('aborted') });
  });
});
