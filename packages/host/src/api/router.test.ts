import { describe, expect, it } from 'vitest';
import { requestTarget } from './router.js';

describe('requestTarget', () => {
  it('reads path and query exactly as URL does, shortcut or not', () => {
    const targets = [
      '/',
      '/api/v1/vms',
      '/api/v1/vms/load-00001/balloon',
      '/api/v1/vms/a%20b/balloon',
      '/api/v1/vms?running=1',
      '/api/v1/metrics?vm=a&metric=Guest%2FRAM%2FUsage%2FTotal',
      '/api/v1/vms/./a',
      '/api/v1/vms/../host',
      '/api/v1/vms/%2e%2E/host',
      '/api/v1/vms/.%2e/host',
      '/api/v1/vms/a/..',
      '/api/v1/vms/..a/balloon',
      '//evil/api/v1/host',
      '/api/v1/vms/a b',
      '/api/v1/vms/a#frag',
      '/api/v1/vms?x=1#frag',
      '/api/v1/vms/%zz',
      '/api/v1/vms/\u00e9',
      '/api\\v1\\host',
      '/api/v1//vms',
      '/api/v1/vms?running=true&running=1',
      '/api/v1/vms?',
    ];
    for (const target of targets) {
      const url = new URL(target, 'http://host.invalid');
      const ours = requestTarget(target);
      expect({ target, pathname: ours.pathname }).toEqual({ target, pathname: url.pathname });
      expect({ target, query: [...ours.searchParams] }).toEqual({ target, query: [...url.searchParams] });
    }
  });
});
