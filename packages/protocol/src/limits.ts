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
 * VM names: printable, no control characters, no leading or trailing space;
 * VirtualBox allows spaces inside a name, and so do we.
 */
export const VM_NAME_PATTERN = /^[\p{L}\p{N}._-](?:[\p{L}\p{N} ._-]*[\p{L}\p{N}._-])?$/u;
