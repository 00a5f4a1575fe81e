// Issue 8: TLS. The host serves https/wss with a self-signed certificate made
// by openssl in a temp dir; the agent verifies it against --ca-file, and
// refuses the connection without it. Skipped, with the reason printed, where
// openssl is missing.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostHandle } from '@memballoon/host';
import { BIN, spawnAgent, stopAll, tempDataDir } from './support/host.js';
import { opensslSkipReason, startTlsHost } from './support/tls.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const skipReason = opensslSkipReason();
if (skipReason) console.warn(`host-tls.test.ts skipped: ${skipReason}`);

describe.skipIf(skipReason !== '')('TLS', () => {
  const data = tempDataDir();
  let host: HostHandle;
  let certPath = '';
  let token = '';

  beforeAll(async () => {
    const started = await startTlsHost(data.dir);
    host = started.host;
    certPath = started.certificate.certPath;
    token = host.service.createVm({ name: 'tls-vm', memoryMib: 128 }).token;
  }, 30_000);
  afterAll(async () => {
    await cleanUp(
      stopAll,
      () => host?.close(),
      () => data?.remove(),
    );
  });

  it('serves https, and the agent connects over wss when it trusts the CA file', async () => {
    expect(host.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const agent = spawnAgent({ url: host.url, name: 'tls-vm', memoryMib: 128, floorMib: 16, extra: ['--token', token, '--ca-file', certPath] });
    await waitFor(() => host.service.isRunning('tls-vm'), { what: 'the agent to connect over wss', timeoutMs: 20_000 });
    await agent.stop();
    await waitFor(() => !host.service.isRunning('tls-vm'), { what: 'the agent to leave' });
  });

  it('refuses a server certificate it cannot verify (no --ca-file)', async () => {
    const agent = spawnAgent({ url: host.url, name: 'tls-vm', memoryMib: 128, floorMib: 16, extra: ['--token', token] });
    await waitFor(() => /self[- ]signed certificate|unable to verify/i.test(agent.output()), {
      what: 'a certificate error in the agent log',
      timeoutMs: 20_000,
    });
    expect(host.service.isRunning('tls-vm')).toBe(false);
    await agent.kill();
  });

  it('balloonctl talks https with the CA in NODE_EXTRA_CA_CERTS', async () => {
    // Asynchronously: the host runs in this process and must keep answering.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BIN.ctl, '--host', host.url, '--admin-token', host.adminToken!, 'showvminfo', 'tls-vm', '--json'],
      {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: certPath, MEMBALLOON_URL: '' },
      },
    );
    expect(JSON.parse(stdout)).toMatchObject({ name: 'tls-vm', memoryMib: 128 });
  });
});
