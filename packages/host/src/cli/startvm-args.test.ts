import { describe, expect, it } from 'vitest';
import { loadCtlConfig } from './ctl-config.js';

describe('balloonctl startvm arguments', () => {
  it("keeps everything after `--` as the guest's command, even balloonctl's own flags", () => {
    const cfg = loadCtlConfig(
      ['--json', 'startvm', 'web', '--user', 'nobody', '--', 'node', 'app.js', '--json', '--host', 'x'],
      { MEMBALLOON_ADMIN_TOKEN: 't' },
      false,
    );
    expect(cfg.json).toBe(true);
    expect(cfg.hostUrl).toBe('http://127.0.0.1:7450');
    expect(cfg.args).toEqual(['startvm', 'web', '--user', 'nobody', '--', 'node', 'app.js', '--json', '--host', 'x']);
  });
});
