// A region's hashes as SharedRegion frames: a large region is split so that
// no frame carries more than MAX_PAGES_PER_REGION_FRAME pages (16 bytes a
// page, well under MAX_FRAME_BYTES).
import { MAX_PAGES_PER_REGION_FRAME, type SharedRegion } from '@memballoon/protocol';
import { PAGE_HASH_BYTES, type PageHashes } from './hashing.js';

/** What a frame says about its region besides the hashes. */
export interface RegionHeader {
  regionId: number;
  name: string;
  version: string;
  sizeBytes: number;
  pageSizeBytes: number;
  mergeable: boolean;
}

/** Splits a region's hashes into SharedRegion bodies in page order; the last has `last: true`. */
export function regionFrames(header: RegionHeader, hashes: PageHashes, maxPagesPerFrame = MAX_PAGES_PER_REGION_FRAME): SharedRegion[] {
  const frames: SharedRegion[] = [];
  for (let first = 0; first < hashes.pageCount; first += maxPagesPerFrame) {
    const end = Math.min(first + maxPagesPerFrame, hashes.pageCount);
    frames.push({
      ...header,
      firstPage: first,
      // subarray, not slice: the frames are encoded at once and the hashes
      // are kept unchanged for as long as the region lives.
      pageHashes: hashes.pageHashes.subarray(first * PAGE_HASH_BYTES, end * PAGE_HASH_BYTES),
      confirmHashes: hashes.confirmHashes.subarray(first * PAGE_HASH_BYTES, end * PAGE_HASH_BYTES),
      last: end === hashes.pageCount,
    });
  }
  return frames;
}
