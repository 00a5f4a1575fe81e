import { describe, expect, it } from 'vitest';
import { jsonDepth, MAX_JSON_DEPTH } from './http.js';

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
