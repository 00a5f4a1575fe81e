// Page-aligned memory for shared regions. KSM merges whole pages and madvise
// needs a page-aligned start, so a region must own its pages outright.
//
// Why a growable SharedArrayBuffer: V8 maps a growable SAB itself (reserve
// maxByteLength, commit byteLength), so its backing store starts at the
// beginning of an mmap and is page-aligned. A plain SAB of the same size comes
// from calloc, whose mmapped chunks start 16 bytes past a page boundary, and a
// Buffer lives in a pool at any offset. aligned.test.ts checks the alignment
// against the kernel (smaps), not against this comment.
import { AgentError } from '../errors.js';

/** The page size the agent hashes and advises with, in bytes (x86-64/arm64 base pages). */
export const DEFAULT_PAGE_SIZE_BYTES = 4096;

/** Largest region the agent accepts, in bytes: the wire's first_page is a uint32. */
export const MAX_REGION_BYTES = 2 ** 32 * DEFAULT_PAGE_SIZE_BYTES - 1;

/** Memory of one region: `bytes` starts on a page boundary and nothing else shares its pages. */
export interface AlignedMemory {
  /** The region's data, exactly sizeBytes long; its first byte is page-aligned. */
  bytes: Uint8Array;
  /** The memory that holds it. */
  buffer: SharedArrayBuffer;
  /** Whether the data was copied in (false: the caller's own memory is used). */
  copied: boolean;
}

/** Input a region may be made from. */
export type RegionData = SharedArrayBuffer | Uint8Array;

// lib ES2023 does not know growable SABs yet (Node 20 has them): the two
// places that need them are typed here.
const GrowableSharedArrayBuffer = SharedArrayBuffer as unknown as new (byteLength: number, opts: { maxByteLength: number }) => SharedArrayBuffer;
const isGrowable = (buf: ArrayBufferLike): boolean => buf instanceof SharedArrayBuffer && (buf as { growable?: boolean }).growable === true;

/** Rounds a size up to whole pages, in bytes. */
export function roundUpToPageBytes(sizeBytes: number, pageSizeBytes = DEFAULT_PAGE_SIZE_BYTES): number {
  return Math.ceil(sizeBytes / pageSizeBytes) * pageSizeBytes;
}

/**
 * Allocates sizeBytes of page-aligned, zeroed memory that no other allocation
 * shares (a growable SAB whose maxByteLength is its whole size, so it cannot
 * grow and nothing else lands in its last page).
 */
export function allocateAligned(sizeBytes: number, pageSizeBytes = DEFAULT_PAGE_SIZE_BYTES): AlignedMemory {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new AgentError('invalid_region', `a region must hold at least one byte (got ${sizeBytes})`);
  if (sizeBytes > MAX_REGION_BYTES) throw new AgentError('invalid_region', `a region of ${sizeBytes} bytes is above the limit of ${MAX_REGION_BYTES}`);
  const mappedBytes = roundUpToPageBytes(sizeBytes, pageSizeBytes);
  let buffer: SharedArrayBuffer;
  try {
    buffer = new GrowableSharedArrayBuffer(mappedBytes, { maxByteLength: mappedBytes });
  } catch (err) {
    throw new AgentError('invalid_region', `cannot allocate ${mappedBytes} bytes for a region: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  return { bytes: new Uint8Array(buffer, 0, sizeBytes), buffer, copied: true };
}

/**
 * Whether a view can be used in place: it lies in a growable SAB (mapped by
 * V8, so page-aligned at offset 0) and starts on a page boundary of it.
 */
export function isPageAligned(view: Uint8Array, pageSizeBytes = DEFAULT_PAGE_SIZE_BYTES): boolean {
  return isGrowable(view.buffer) && view.byteOffset % pageSizeBytes === 0;
}

/** The caller's data as page-aligned memory: in place when it already is, else a copy. */
export function toAligned(data: RegionData, pageSizeBytes = DEFAULT_PAGE_SIZE_BYTES): AlignedMemory {
  let view: Uint8Array;
  if (data instanceof SharedArrayBuffer) view = new Uint8Array(data);
  else if (data instanceof Uint8Array) view = data;
  else throw new AgentError('invalid_region', 'region data must be a Buffer, Uint8Array or SharedArrayBuffer');
  if (view.byteLength === 0) throw new AgentError('invalid_region', 'a region must hold at least one byte');
  if (isPageAligned(view, pageSizeBytes)) return { bytes: view, buffer: view.buffer as SharedArrayBuffer, copied: false };
  const mem = allocateAligned(view.byteLength, pageSizeBytes);
  mem.bytes.set(view);
  return mem;
}
