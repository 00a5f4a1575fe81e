import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from './errors.js';
import {
  closeCodeOf,
  ERROR_CLOSE_CODE_BASE,
  errorCodeOfClose,
  FINAL_ERROR_CODES,
  GUEST_PATH,
  GUEST_SUBPROTOCOL,
  MAX_CHUNK_MIB,
  MAX_CREDENTIAL_CHARS,
  MAX_FRAME_BYTES,
  MAX_GENERATION,
  MAX_HELLO_GENERATION,
  MAX_INTERVAL_MS,
  MAX_MEMORY_MIB,
  MAX_PAGE_SIZE_BYTES,
  MAX_PAGES_PER_REGION_FRAME,
  MAX_TEXT_CHARS,
  MAX_VM_NAME_CHARS,
  MIN_PAGE_SIZE_BYTES,
} from './wire.js';

describe('wire close codes', () => {
  it('are 4000 + the error code wire number, and read back to the same code', () => {
    expect(closeCodeOf('malformed_frame')).toBe(4001);
    expect(closeCodeOf('auth_failed')).toBe(4007);
    for (const code of ERROR_CODES) expect(errorCodeOfClose(closeCodeOf(code))).toBe(code);
  });

  it('stand for no error code outside the range', () => {
    expect(errorCodeOfClose(1000)).toBeUndefined();
    expect(errorCodeOfClose(1006)).toBeUndefined();
    expect(errorCodeOfClose(ERROR_CLOSE_CODE_BASE - 1)).toBeUndefined();
    expect(errorCodeOfClose(ERROR_CLOSE_CODE_BASE + ERROR_CODES.length)).toBeUndefined();
    expect(errorCodeOfClose(4000.5)).toBeUndefined();
  });

  it('final errors are real codes', () => {
    for (const code of FINAL_ERROR_CODES) expect(ERROR_CODES).toContain(code);
  });
});

describe('the .proto states the wire rules of wire.ts', () => {
  const proto = readFileSync(fileURLToPath(new URL('../proto/memballoon/v1/memballoon.proto', import.meta.url)), 'utf8');

  it('names the path, the subprotocol, the close-code base, the generation bounds and the limits', () => {
    expect(proto).toContain(`path ${GUEST_PATH} appended`);
    expect(proto).toContain(`subprotocol "${GUEST_SUBPROTOCOL}"`);
    expect(proto).toContain(`code ${ERROR_CLOSE_CODE_BASE} + the ErrorCode's number`);
    expect(proto).toContain(`2^48 - 1 (${MAX_GENERATION})`);
    expect(proto).toContain(`2^47\n//     (${MAX_HELLO_GENERATION})`);
    expect(proto).toContain(`${MAX_FRAME_BYTES} bytes`);
    expect(proto).toContain(`1 to ${MAX_VM_NAME_CHARS} characters`);
    expect(proto).toContain(`credential: ${MAX_CREDENTIAL_CHARS} characters; other strings: ${MAX_TEXT_CHARS} characters`);
    expect(proto).toContain(`${MAX_MEMORY_MIB} MiB`);
    expect(proto).toContain(`chunk_size_mib: 1 to ${MAX_CHUNK_MIB}`);
    expect(proto).toContain(`Intervals: ${MAX_INTERVAL_MS} ms`);
    expect(proto).toContain(`${MIN_PAGE_SIZE_BYTES} to ${MAX_PAGE_SIZE_BYTES}\n//     bytes`);
    expect(proto).toContain(`SharedRegion frame: ${MAX_PAGES_PER_REGION_FRAME} pages`);
    for (const code of FINAL_ERROR_CODES)
      expect(proto.slice(proto.indexOf('Final (a guest must not reconnect'), proto.indexOf('Any other refusal'))).toContain(code.toUpperCase());
  });

  it('has an ErrorCode enum in the same order as ERROR_CODES, and a comment on every field and value', () => {
    const enumBody = /enum ErrorCode \{([^}]*)\}/.exec(proto)![1]!;
    const names = [...enumBody.matchAll(/ERROR_CODE_([A-Z_]+) = (\d+);/g)].map((m) => [m[1]!.toLowerCase(), Number(m[2])] as const);
    expect(names).toEqual(ERROR_CODES.map((c, i) => [c, i]));
    const lines = proto.split('\n');
    const undocumented = lines.flatMap((line, i) => {
      const t = line.trim();
      const declares = /^(\w+\s+)?[\w.]+\s+\w+\s*=\s*\d+;$/.test(t) || /^[A-Z0-9_]+\s*=\s*\d+;$/.test(t) || /^(message|enum|oneof)\s/.test(t);
      if (!declares || t.endsWith('_UNSPECIFIED = 0;')) return [];
      return lines[i - 1]!.trim().startsWith('//') ? [] : [t];
    });
    expect(undocumented).toEqual([]);
  });

  it('sets the package options other languages need, and every enum starts at an _UNSPECIFIED zero', () => {
    for (const option of ['go_package', 'java_package', 'java_multiple_files', 'csharp_namespace'])
      expect(proto).toMatch(new RegExp(`^option ${option} = `, 'm'));
    for (const m of proto.matchAll(/enum (\w+) \{\s*(?:\/\/[^\n]*\n\s*)*(\w+) = 0;/g)) expect(m[2], m[1]).toMatch(/_UNSPECIFIED$/);
  });
});
