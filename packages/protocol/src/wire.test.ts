import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from './errors.js';
import { closeCodeOf, ERROR_CLOSE_CODE_BASE, errorCodeOfClose, FINAL_ERROR_CODES } from './wire.js';

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
