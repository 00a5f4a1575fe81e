// Secrets of the host: per-VM guest tokens and the admin token. Pure logic
// (node:crypto and node:fs only): no sockets, no logger.
//
// Why SHA-256 and not scrypt: a token is 256 bits from the CSPRNG, not a
// password a human picked, so nobody can guess it from its hash however fast
// the hash is; a slow KDF only protects low-entropy secrets. A fast hash also
// keeps a Hello cheap when a thousand agents reconnect after a host restart
// (scrypt at its defaults costs tens of ms of CPU each). Digests are compared
// in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { HostError } from '../errors.js';
import { ADMIN_SECRET, createPrivateFile, ensurePrivateDir, readPrivateFile, type SecretKind } from './private-files.js';

/** Bytes of randomness in every token (256 bits). */
export const TOKEN_BYTES = 32;

/** The admin token's file inside the data directory (mode 0600). */
export const ADMIN_TOKEN_FILE = 'admin.token';

/** The read-only token's file beside it (same rules): reads /metrics and the API's GETs, changes nothing. */
export const READONLY_TOKEN_FILE = 'readonly.token';

/** A fresh token: 32 random bytes, base64url (43 characters, safe in URLs, headers and shells). */
export function generateToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

/** The stored form of a token: `sha256:` and the hex digest. */
export function hashToken(token: string): string {
  return `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

/** Whether `token` matches a stored hash, in constant time; false for an unknown hash format. */
export function tokenMatches(token: string, storedHash: string): boolean {
  if (!storedHash.startsWith('sha256:')) return false;
  const expected = Buffer.from(storedHash.slice('sha256:'.length), 'hex');
  const actual = createHash('sha256').update(token, 'utf8').digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/**
 * Checks tokens against one stored hash, remembering the last token that
 * matched: a client sends the same admin token with every request, and at a
 * few hundred requests a second the SHA-256 of each was a twentieth of the
 * host's CPU. The remembered token is compared in constant time as well.
 */
export class TokenVerifier {
  readonly #storedHash: string;
  #known: Buffer | undefined;

  constructor(storedHash: string) {
    this.#storedHash = storedHash;
  }

  /** Whether `token` matches the stored hash (tokenMatches, with the last match remembered). */
  matches(token: string): boolean {
    const presented = Buffer.from(token, 'utf8');
    const known = this.#known;
    if (known !== undefined && known.length === presented.length && timingSafeEqual(known, presented)) return true;
    if (!tokenMatches(token, this.#storedHash)) return false;
    this.#known = presented;
    return true;
  }
}

/** The Bearer token of an Authorization header, or undefined. */
export function bearerOf(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/** Whether a listen address reaches only this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

/**
 * Reads `<dataDir>/admin.token`, creating it (mode 0600, the directory 0700)
 * with a fresh token on the first start. Refused, with what to fix: a data
 * directory others may write or that another user owns, a token file that is
 * a link, not ours, or readable by others (whoever reads it controls every
 * balloon), or one that holds no token.
 */
export function ensureAdminToken(dataDir: string, file = ADMIN_TOKEN_FILE): { token: string; path: string; created: boolean } {
  ensurePrivateDir(dataDir);
  const path = join(dataDir, file);
  // O_EXCL: never overwrite a token another start created meanwhile.
  const created = createPrivateFile(path, `${generateToken()}\n`);
  const token = (readPrivateFile(path, { secret: secretOf(file) }) ?? '').trim();
  if (token.length < 16) throw new HostError('unsafe_file', `${path} holds no usable token; delete it to make a new one`);
  return { token, path, created };
}

/** What the read-only token's file gives whoever reads or writes it: a look, no change (the refusals say so). */
const READONLY_SECRET: SecretKind = {
  what: 'the read-only token',
  readerCan: "sees every VM's settings, figures and metrics and the dashboard (read-only: no balloon changes)",
};

/** What a token file holds, for the refusals about its owner and mode. */
function secretOf(file: string): SecretKind {
  return file === READONLY_TOKEN_FILE ? READONLY_SECRET : ADMIN_SECRET;
}

/** `<dataDir>/readonly.token`, made and checked as the admin token is (0600, never overwritten). */
export function ensureReadonlyToken(dataDir: string): { token: string; path: string; created: boolean } {
  return ensureAdminToken(dataDir, READONLY_TOKEN_FILE);
}

/**
 * Reads the admin token from a data directory (balloonctl on the same
 * machine); undefined if there is none. The same checks as the host's: a
 * link or a file others could have written is refused, not sent.
 */
export function readAdminToken(dataDir: string, file = ADMIN_TOKEN_FILE): string | undefined {
  const t = readPrivateFile(join(dataDir, file), { ownedByUs: false, unreadableIsMissing: true, secret: secretOf(file) })?.trim();
  return t === '' ? undefined : t;
}
