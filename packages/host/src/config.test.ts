import { describe, expect, it } from 'vitest';
import { defaultPoolSizeMib, loadHostConfig, parseListen } from './config.js';
import { loadCtlConfig } from './cli/ctl-config.js';

describe('balloon-host config', () => {
  it('has the documented defaults', () => {
    const c = loadHostConfig([], { HOME: '/home/x' }, false);
    expect(c).toMatchObject({
      listenHost: '127.0.0.1',
      listenPort: 7450,
      autoRegister: false,
      logLevel: 'info',
      logPretty: false,
      policyIntervalMs: 1000,
      policyMarginMib: 256,
    });
    expect(c.dataDir).toMatch(/memballoon$/);
    expect(c.poolSizeMib).toBeGreaterThan(0);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('takes flags over the environment', () => {
    const env = { MEMBALLOON_LISTEN: '0.0.0.0:1', MEMBALLOON_POOL_MIB: '100', MEMBALLOON_AUTO_REGISTER: '1', MEMBALLOON_DATA_DIR: '/env' };
    expect(loadHostConfig([], env, false)).toMatchObject({ listenHost: '0.0.0.0', listenPort: 1, poolSizeMib: 100, autoRegister: true, dataDir: '/env' });
    expect(loadHostConfig(['--listen', '127.0.0.1:0', '--pool-mib=768', '--data-dir', '/flag'], env, false)).toMatchObject({
      listenPort: 0,
      poolSizeMib: 768,
      dataDir: '/flag',
    });
  });

  it('refuses nonsense with one clear line', () => {
    expect(() => loadHostConfig(['--pool-mib', 'lots'], {}, false)).toThrow("--pool-mib must be a whole number from 0 to 16777216 (got 'lots')");
    expect(() => loadHostConfig(['--listen', 'nowhere'], {}, false)).toThrow(/is not HOST:PORT/);
    expect(() => loadHostConfig(['--frob'], {}, false)).toThrow(/unknown argument '--frob'/);
    expect(() => loadHostConfig(['--data-dir'], {}, false)).toThrow(/--data-dir needs a value/);
    expect(loadHostConfig(['--policy-margin-mib', '64'], { MEMBALLOON_POLICY_MARGIN_MIB: '9' }, false).policyMarginMib).toBe(64);
    expect(() => loadHostConfig(['--policy-margin-mib', '-1'], {}, false)).toThrow(/--policy-margin-mib must be a whole number/);
  });

  it('parses IPv6 and leaves a reserve for the host', () => {
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(() => parseListen('a:70000')).toThrow();
    expect(defaultPoolSizeMib(24_000)).toBe(19_200);
    expect(defaultPoolSizeMib(1024)).toBe(512);
    expect(defaultPoolSizeMib(100)).toBe(0);
  });
});

describe('balloonctl config', () => {
  it('finds the host in --host, MEMBALLOON_URL, then the default', () => {
    expect(loadCtlConfig(['list', 'vms'], {}, false)).toMatchObject({ hostUrl: 'http://127.0.0.1:7450', json: false, args: ['list', 'vms'] });
    expect(loadCtlConfig(['list', '--json', 'vms'], { MEMBALLOON_URL: 'http://h:1/' }, false)).toMatchObject({
      hostUrl: 'http://h:1',
      json: true,
      args: ['list', 'vms'],
    });
    expect(loadCtlConfig(['--host', 'https://x:2', 'showhostinfo'], { MEMBALLOON_URL: 'http://h:1' }, false).hostUrl).toBe('https://x:2');
    expect(() => loadCtlConfig(['--host', 'ftp://x'], {}, false)).toThrow(/must start with http/);
  });
});
