// The wire contract of memballoon v1 in one place: where guests connect, the
// subprotocol they offer, how a protocol error maps to a close code, which
// errors are final, and every limit a frame is held to. Host and agent import
// these; neither retypes them (the .proto's header repeats them for other
// languages, and wire.test.ts checks the two agree).
import { ERROR_CODES, ProtocolError, type ErrorCode } from './errors.js';

/** The path of the guests' WebSocket endpoint on the host's base URL. */
export const GUEST_PATH = '/v1/guest';

/** The WebSocket subprotocol a guest offers and the host picks. */
export const GUEST_SUBPROTOCOL = 'memballoon.v1';

/** A fatal protocol error closes the socket with this + the ErrorCode's wire number. */
export const ERROR_CLOSE_CODE_BASE = 4000;

/** The WebSocket close code for a protocol error: 4000 + its wire number. */
export function closeCodeOf(code: ErrorCode): number {
  return ERROR_CLOSE_CODE_BASE + ERROR_CODES.indexOf(code);
}

/** The protocol error a close code stands for, or undefined for any other close code. */
export function errorCodeOfClose(closeCode: number): ErrorCode | undefined {
  if (!Number.isInteger(closeCode) || closeCode < ERROR_CLOSE_CODE_BASE) return undefined;
  return ERROR_CODES[closeCode - ERROR_CLOSE_CODE_BASE];
}

/**
 * Refusals after which a guest must not reconnect with the same settings:
 * retrying cannot succeed until an operator changes something (a token, the
 * agent's version, its configuration).
 */
export const FINAL_ERROR_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['auth_failed', 'unsupported_version', 'invalid_argument']);

/**
 * Largest balloon generation on the wire (2^48 − 1). A generation counts the
 * targets one VM was sent; at a thousand a second it takes 8,900 years to get
 * here, so anything above is a lie or a bug and is refused when decoded.
 */
export const MAX_GENERATION = 2 ** 48 - 1;

/**
 * Largest generation a guest may report in Hello (2^47). The host counts on
 * from what a resuming guest reports, so a Hello must leave room below
 * MAX_GENERATION: a guest that reported the very top would be sent targets
 * nobody can decode, and would be locked out.
 */
export const MAX_HELLO_GENERATION = 2 ** 47;

/** The generation after every one given (the host's next target); out_of_range past MAX_GENERATION. */
export function nextGeneration(...seen: number[]): number {
  const next = Math.max(0, ...seen) + 1;
  if (!Number.isSafeInteger(next) || next > MAX_GENERATION) {
    throw new ProtocolError('out_of_range', `the balloon generation would pass ${MAX_GENERATION}`);
  }
  return next;
}

/** The protocol version this code speaks; an Envelope with another is refused. */
export const PROTOCOL_VERSION = 1;

/** Bytes in a MiB: every size in the protocol and both ends is counted in MiB or bytes, converted with this. */
export const BYTES_PER_MIB = 1024 * 1024;

/** Largest frame either side accepts (a SharedRegion chunk is the largest body). */
export const MAX_FRAME_BYTES = 1024 * 1024;

/** Longest VM name, in characters. */
export const MAX_VM_NAME_CHARS = 64;

/** Longest credential (token), in characters. */
export const MAX_CREDENTIAL_CHARS = 256;

/** Longest free-text field (details, messages, versions, hostnames), in characters. */
export const MAX_TEXT_CHARS = 1024;

/**
 * Largest memory size or balloon, in MiB (16 TiB). Anything above is an
 * absurd size, refused before it reaches any arithmetic.
 */
export const MAX_MEMORY_MIB = 16 * 1024 * 1024;

/** Largest balloon chunk, in MiB. */
export const MAX_CHUNK_MIB = 1024;

/** Largest interval the host may ask for (statistics, heartbeats), in ms. */
export const MAX_INTERVAL_MS = 3_600_000;

/** Most pages whose hashes one SharedRegion frame may carry (16 bytes a page). */
export const MAX_PAGES_PER_REGION_FRAME = 16_384;

/** Bytes of one page hash on the wire (64-bit, little-endian). */
export const PAGE_HASH_BYTES = 8;

/** Smallest and largest page size a guest may report, in bytes. */
export const MIN_PAGE_SIZE_BYTES = 4096;
export const MAX_PAGE_SIZE_BYTES = 2 * 1024 * 1024;

/**
 * The VM name grammar, the only one (host, agent, admin API and CLI use it
 * through vmNameProblem): letters, digits, '.', '_' and '-', and spaces
 * inside (VirtualBox allows them, and so do we). Every such name survives a
 * URL path unchanged once percent-encoded (/api/v1/vms/NAME), except a name
 * of dots only: '.' and '..' are path steps that URL normalisation removes,
 * so no name may be only dots. No '/', '%', '?', '#', '\\' or control
 * characters can appear.
 */
export const VM_NAME_PATTERN = /^(?!\.+$)[\p{L}\p{N}._-](?:[\p{L}\p{N} ._-]*[\p{L}\p{N}._-])?$/u;
