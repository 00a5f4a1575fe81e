import { describe, expect, it } from 'vitest';
import { loadConfig, USAGE } from '../cli/config.js';

describe('balloon-agent --share-file', () => {
  it('is repeatable and kept in order', () => {
    const c = loadConfig(['--name', 'g', '--share-file', '/a.bin', '--share-file=/b.bin'], {});
    expect(c.shareFiles).toEqual(['/a.bin', '/b.bin']);
    expect(loadConfig(['--name', 'g'], {}).shareFiles).toEqual([]);
    expect(USAGE).toMatch(/--share-file PATH/);
  });

  it('needs a path', () => {
    expect(() => loadConfig(['--name', 'g', '--share-file'], {})).toThrow(/--share-file needs a value/);
  });
});
