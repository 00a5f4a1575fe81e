import { describe, expect, it } from 'vitest';
import { loadConfig, workloadEnv } from './config.js';

describe('agent CLI config', () => {
  it('parses every flag and the wrapped command', () => {
    const c = loadConfig(
      [
        '--host',
        'http://h:1',
        '--name',
        'vm 1',
        '--memory-mib',
        '2048',
        '--chunk-mib=4',
        '--floor-mib',
        '100',
        '--no-lock',
        '--domain',
        'process',
        '--log-level',
        'debug',
        '--',
        'sleep',
        '10',
      ],
      {},
    );
    expect(c).toMatchObject({
      host: 'http://h:1',
      name: 'vm 1',
      memoryMib: 2048,
      chunkMib: 4,
      floorMib: 100,
      lock: false,
      domain: 'process',
      logLevel: 'debug',
      command: ['sleep', '10'],
    });
    expect(Object.isFrozen(c)).toBe(true);
  });
  it('--log-pretty, MEMBALLOON_LOG_PRETTY=1, or a terminal on stderr: pretty logs; JSON otherwise', () => {
    expect(loadConfig(['--name', 'a'], {}).logPretty).toBe(false);
    expect(loadConfig(['--name', 'a', '--log-pretty'], {}).logPretty).toBe(true);
    expect(loadConfig(['--name', 'a'], { MEMBALLOON_LOG_PRETTY: '1' }).logPretty).toBe(true);
    expect(loadConfig(['--name', 'a'], {}, true).logPretty).toBe(true);
  });
  it('takes the token and URL from the environment; flags win', () => {
    expect(loadConfig(['--name', 'a'], { MEMBALLOON_TOKEN: 't', MEMBALLOON_URL: 'http://e:2' })).toMatchObject({ token: 't', host: 'http://e:2' });
    expect(loadConfig(['--name', 'a', '--token', 'f'], { MEMBALLOON_TOKEN: 't' }).token).toBe('f');
    expect(loadConfig(['--name', 'a'], {}).host).toBe('http://127.0.0.1:7450');
  });
  it('takes the CA as PEM text from MEMBALLOON_CA_PEM (what startvm passes), refuses anything else, and keeps it from the workload', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    expect(loadConfig(['--name', 'a'], { MEMBALLOON_CA_PEM: pem })).toMatchObject({ caPem: pem, caFile: undefined });
    expect(loadConfig(['--name', 'a'], {}).caPem).toBeUndefined();
    expect(() => loadConfig(['--name', 'a'], { MEMBALLOON_CA_PEM: '/etc/ssl/ca.pem' })).toThrow(/MEMBALLOON_CA_PEM must hold a PEM certificate/);
    expect(workloadEnv({ MEMBALLOON_CA_PEM: pem, MEMBALLOON_TOKEN: 't', PATH: '/bin' })).toEqual({ PATH: '/bin' });
  });
  it('refuses bad input with a clear message', () => {
    expect(() => loadConfig(['--host', 'http://h'], {})).toThrow(/--name NAME is required/);
    expect(() => loadConfig(['--name', 'a', '--chunk-mib', '0'], {})).toThrow(/--chunk-mib needs a whole number/);
    expect(() => loadConfig(['--name', 'a', '--domain', 'vm'], {})).toThrow(/--domain must be/);
    expect(() => loadConfig(['--name', 'a', '--bogus'], {})).toThrow(/unknown option '--bogus'/);
    expect(() => loadConfig(['--name', 'a', '--'], {})).toThrow(/followed by a command/);
  });
});
