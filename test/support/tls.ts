// TLS for end-to-end tests: a self-signed certificate made by openssl, and
// an in-process host serving https with it (one place for both, which each
// TLS test used to spell out).
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostHandle, StartHostOptions } from '@memballoon/host';
import { startTestHost } from './in-process-host.js';

/** Why a test cannot make a certificate here ('' when it can). */
export function opensslSkipReason(): string {
  return spawnSync('openssl', ['version']).status === 0 ? '' : 'openssl is not installed (needed to make a self-signed certificate)';
}

/** A self-signed certificate and its key: the PEM files and their contents. */
export interface TestCertificate {
  certPath: string;
  keyPath: string;
  cert: Buffer;
  key: Buffer;
}

/** Makes a self-signed certificate for 127.0.0.1 and localhost, valid for a day, in dir (cert.pem, key.pem). */
export function makeSelfSignedCertificate(dir: string): TestCertificate {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: 'ignore' },
  );
  return { certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) };
}

/** A host serving https, and the certificate its clients must trust. */
export interface TlsTestHost {
  host: HostHandle;
  certificate: TestCertificate;
}

/**
 * Starts an in-process host (startTestHost, a 512 MiB pool unless options
 * say otherwise) serving https with a new self-signed certificate; the
 * certificate goes in dir, the host's data in dir/host.
 */
export async function startTlsHost(dir: string, options: Partial<StartHostOptions> = {}): Promise<TlsTestHost> {
  const certificate = makeSelfSignedCertificate(dir);
  const host = await startTestHost({
    dataDir: join(dir, 'host'),
    poolSizeMib: 512,
    tls: { cert: certificate.cert, key: certificate.key },
    ...options,
  });
  return { host, certificate };
}
