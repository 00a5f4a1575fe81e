// A guest started with `startvm --user U` on a host that serves TLS must
// verify the host's certificate although it cannot read anything in the
// host's 0700 data directory: the launcher hands the certificate to the
// agent in its environment (MEMBALLOON_CA_PEM), never as a file, and the
// workload does not inherit it. Real host over https, a real agent as
// `nobody`; needs root and openssl (skips with a reason otherwise).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HostHandle } from '@memballoon/host';
import { tempDataDir } from './support/host.js';
import { testGuests } from './support/in-process-host.js';
import { opensslSkipReason, startTlsHost } from './support/tls.js';
import { waitFor } from './support/wait.js';
import { cleanUp } from './support/cleanup.js';

const GUEST_USER = 'nobody';
const userExists = (name: string) =>
  readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .some((l) => l.startsWith(`${name}:`));
const skipReason =
  opensslSkipReason() ||
  (process.getuid?.() !== 0 ? 'not root: cannot start a guest as another user' : '') ||
  (userExists(GUEST_USER) ? '' : `no user '${GUEST_USER}'`);
if (skipReason) console.log(`tls-user-guest.test.ts skipped: ${skipReason}`);

const data = tempDataDir();
let host: HostHandle;
let cert: Buffer;

beforeAll(async () => {
  if (skipReason) return;
  const started = await startTlsHost(data.dir, { guests: testGuests({ forceProcessMode: true }) });
  host = started.host;
  cert = started.certificate.cert;
  host.service.createVm({ name: 'tls-user', memoryMib: 128 });
}, 30_000);
afterAll(async () => {
  await cleanUp(
    () => host?.close(),
    () => data?.remove(),
  );
});

/** The admin API over https, trusting the host's self-signed certificate. */
function api(method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      `${host.url}/api/v1${path}`,
      {
        method,
        ca: cert,
        headers: {
          authorization: `Bearer ${host.adminToken}`,
          ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');

it('an unprivileged guest verifies the host over TLS with the certificate in its environment, not a file', async (ctx) => {
  if (skipReason) return ctx.skip();
  expect(host.url).toMatch(/^https:/);
  const hostDir = join(data.dir, 'host');
  expect(statSync(hostDir).mode & 0o777).toBe(0o700);
  const started = await api('POST', '/vms/tls-user/startvm', { command: ['sleep', '600'], user: GUEST_USER });
  expect(started.status, started.text).toBe(200);
  const vm = host.service.vmView('tls-user');
  expect(vm.state).toBe('running');
  const agentPid = vm.managed!.agentPid!;
  expect(statSync(`/proc/${agentPid}`).uid).toBe(Number(execFileSync('id', ['-u', GUEST_USER], { encoding: 'utf8' }).trim()));
  // The certificate went by environment; no copy of it lies in the data directory.
  expect(environOf(agentPid).some((e) => e.startsWith('MEMBALLOON_CA_PEM=-----BEGIN CERTIFICATE-----'))).toBe(true);
  expect(readdirSync(hostDir).filter((f) => f.endsWith('.pem'))).toEqual([]);
  // The workload does not inherit it (nor the token).
  const sleepPid = await waitFor(
    () => {
      const kids = readFileSync(`/proc/${agentPid}/task/${agentPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      return kids.find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep'));
    },
    { what: 'the workload', timeoutMs: 30_000 },
  );
  expect(environOf(sleepPid).filter((e) => /^MEMBALLOON_(CA_PEM|TOKEN)=/.test(e))).toEqual([]);
  expect((await api('POST', '/vms/tls-user/poweroff')).status).toBe(200);
  expect(existsSync(`/proc/${agentPid}/cmdline`) && readFileSync(`/proc/${agentPid}/cmdline`, 'utf8') !== '').toBe(false);
}, 120_000);
