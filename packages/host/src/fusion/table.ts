// The host's global sharing table: per VM, per region, per page (primary
// hash, confirming hash). Pure: no I/O, no clock, no logger. It answers at
// once which hinted pages are identical across guests (sharable MiB per VM
// and host-wide), for all hints and separately for the regions the guests
// have made mergeable (what KSM can actually merge).
import { HostError } from '../errors.js';
import { KEY_WORDS, PageIndex } from './index-of-pages.js';
import { BYTES_PER_MIB } from '@memballoon/protocol';

/** Default cap on hinted pages per VM: 262,144 pages, 1 GiB of 4 KiB pages (at most about 30 MiB of table, measured). */
export const DEFAULT_MAX_HINTED_PAGES_PER_VM = 262_144;

/** Bytes in one MiB. */
/** Bytes of one page hash on the wire. */
const HASH_BYTES = 8;

/** A complete region of one VM, as the guest hinted it. */
export interface RegionHint {
  regionId: number;
  name: string;
  version: string;
  sizeBytes: number;
  pageSizeBytes: number;
  /** 8 bytes per page, little-endian. */
  pageHashes: Uint8Array;
  /** 8 bytes per page, little-endian; an independent second hash. */
  confirmHashes: Uint8Array;
  /** The guest advised it MADV_MERGEABLE. */
  mergeable: boolean;
}

/** What the table knows of one VM. */
export interface VmSharing {
  regions: number;
  hintedPages: number;
  hintedMib: number;
  /** MiB of this VM's hinted pages that another VM holds too. */
  sharableMib: number;
  /** The same, counting only mergeable regions on both sides. */
  mergeableSharableMib: number;
}

/**
 * What the table knows host-wide. sharableMib sums the VMs' sharableMib (the
 * counterpart of the guests' summed shared_bytes); savingMib is what merging
 * would free (per content, VMs holding it - 1), the counterpart of the
 * kernel's pages_sharing.
 */
export interface HostSharing {
  vms: number;
  hintedMib: number;
  sharableMib: number;
  savingMib: number;
  /** sharableMib counting only mergeable regions. */
  mergeableSharableMib: number;
  /** savingMib counting only mergeable regions. */
  mergeableSavingMib: number;
}

/** Options of SharingTable. */
export interface SharingTableOptions {
  /** Most hinted pages kept per VM; a region beyond it is refused (too_many_pages). */
  maxHintedPagesPerVm?: number;
}

// One region as stored: its hashes copied into 32-bit words, interleaved
// (primary then confirming, per page), so keys can be found again on removal
// and nothing references the frames they came in.
interface StoredRegion {
  hint: Omit<RegionHint, 'pageHashes' | 'confirmHashes'>;
  log2PageSize: number;
  words: Uint32Array;
  pages: number;
}

interface VmEntry {
  index: number;
  regions: Map<number, StoredRegion>;
  hintedPages: number;
  hintedBytes: number;
}

/** The global sharing table of the host. */
export class SharingTable {
  readonly maxHintedPagesPerVm: number;
  readonly #vms = new Map<string, VmEntry>();
  readonly #all = new PageIndex();
  readonly #mergeable = new PageIndex();
  readonly #freeIndexes: number[] = [];
  #nextIndex = 0;
  #hintedBytes = 0;

  constructor(opts: SharingTableOptions = {}) {
    this.maxHintedPagesPerVm = opts.maxHintedPagesPerVm ?? DEFAULT_MAX_HINTED_PAGES_PER_VM;
  }

  /** Pages VM `vm` may still hint before the cap. */
  remainingPages(vm: string): number {
    return this.maxHintedPagesPerVm - (this.#vms.get(vm)?.hintedPages ?? 0);
  }

  /** Adds a region of a VM, replacing one of the same id. Throws HostError (invalid_region, too_many_pages). */
  putRegion(vm: string, region: RegionHint): void {
    const pages = checkRegion(region);
    const entry = this.#vms.get(vm);
    const replaced = entry?.regions.get(region.regionId);
    const after = (entry?.hintedPages ?? 0) - (replaced?.pages ?? 0) + pages;
    if (after > this.maxHintedPagesPerVm) {
      throw new HostError(
        'too_many_pages',
        `VM '${vm}' would hint ${after} pages with region '${region.name}', above the host's limit of ${this.maxHintedPagesPerVm} pages per VM`,
      );
    }
    if (replaced) this.removeRegion(vm, region.regionId);
    const e = this.#vmEntry(vm);
    const stored: StoredRegion = {
      hint: {
        regionId: region.regionId,
        name: region.name,
        version: region.version,
        sizeBytes: region.sizeBytes,
        pageSizeBytes: region.pageSizeBytes,
        mergeable: region.mergeable,
      },
      log2PageSize: Math.log2(region.pageSizeBytes),
      words: interleave(region.pageHashes, region.confirmHashes, pages),
      pages,
    };
    e.regions.set(region.regionId, stored);
    e.hintedPages += pages;
    e.hintedBytes += pages * region.pageSizeBytes;
    this.#hintedBytes += pages * region.pageSizeBytes;
    this.#apply(e.index, stored, +1);
  }

  /** Removes one region of a VM; false if it had none of that id. */
  removeRegion(vm: string, regionId: number): boolean {
    const e = this.#vms.get(vm);
    const stored = e?.regions.get(regionId);
    if (!e || !stored) return false;
    this.#apply(e.index, stored, -1);
    e.regions.delete(regionId);
    const bytes = stored.pages * stored.hint.pageSizeBytes;
    e.hintedPages -= stored.pages;
    e.hintedBytes -= bytes;
    this.#hintedBytes -= bytes;
    if (e.regions.size === 0) this.#dropVm(vm, e);
    return true;
  }

  /** Removes every region of a VM (its guest disconnected). */
  removeVm(vm: string): void {
    const e = this.#vms.get(vm);
    if (!e) return;
    for (const id of [...e.regions.keys()]) this.removeRegion(vm, id);
  }

  /** What the table knows of one VM (zeros for a VM without hints). */
  vm(vm: string): VmSharing {
    const e = this.#vms.get(vm);
    if (!e) return { regions: 0, hintedPages: 0, hintedMib: 0, sharableMib: 0, mergeableSharableMib: 0 };
    return {
      regions: e.regions.size,
      hintedPages: e.hintedPages,
      hintedMib: e.hintedBytes / BYTES_PER_MIB,
      sharableMib: this.#all.sharableBytes(e.index) / BYTES_PER_MIB,
      mergeableSharableMib: this.#mergeable.sharableBytes(e.index) / BYTES_PER_MIB,
    };
  }

  /** The regions of a VM, without their hashes. */
  regions(vm: string): Array<Omit<RegionHint, 'pageHashes' | 'confirmHashes'>> {
    return [...(this.#vms.get(vm)?.regions.values() ?? [])].map((r) => ({ ...r.hint }));
  }

  /** What the table knows host-wide. */
  host(): HostSharing {
    return {
      vms: this.#vms.size,
      hintedMib: this.#hintedBytes / BYTES_PER_MIB,
      sharableMib: this.#all.totalSharableBytes() / BYTES_PER_MIB,
      savingMib: this.#all.savingBytes() / BYTES_PER_MIB,
      mergeableSharableMib: this.#mergeable.totalSharableBytes() / BYTES_PER_MIB,
      mergeableSavingMib: this.#mergeable.savingBytes() / BYTES_PER_MIB,
    };
  }

  #apply(vmIndex: number, r: StoredRegion, sign: 1 | -1): void {
    const log2 = r.log2PageSize;
    const mergeable = r.hint.mergeable;
    for (let at = 0; at < r.pages * KEY_WORDS; at += KEY_WORDS) {
      if (sign > 0) {
        this.#all.add(vmIndex, r.words, at, log2);
        if (mergeable) this.#mergeable.add(vmIndex, r.words, at, log2);
      } else {
        this.#all.remove(vmIndex, r.words, at, log2);
        if (mergeable) this.#mergeable.remove(vmIndex, r.words, at, log2);
      }
    }
  }

  #vmEntry(vm: string): VmEntry {
    let e = this.#vms.get(vm);
    if (!e) {
      // Indexes of departed VMs are reused, so the per-VM arrays of the
      // indexes stay as small as the number of VMs at once.
      e = { index: this.#freeIndexes.pop() ?? this.#nextIndex++, regions: new Map(), hintedPages: 0, hintedBytes: 0 };
      this.#vms.set(vm, e);
    }
    return e;
  }

  #dropVm(vm: string, e: VmEntry): void {
    this.#vms.delete(vm);
    this.#freeIndexes.push(e.index);
  }
}

function checkRegion(r: RegionHint): number {
  const ps = r.pageSizeBytes;
  if (!Number.isInteger(ps) || ps < 4096 || (ps & (ps - 1)) !== 0)
    throw new HostError('invalid_region', `region '${r.name}' has page size ${ps}, not a power of two of at least 4096`);
  if (r.pageHashes.byteLength % HASH_BYTES !== 0 || r.pageHashes.byteLength !== r.confirmHashes.byteLength) {
    throw new HostError(
      'invalid_region',
      `region '${r.name}' has ${r.pageHashes.byteLength} bytes of page hashes and ${r.confirmHashes.byteLength} of confirming hashes`,
    );
  }
  const pages = r.pageHashes.byteLength / HASH_BYTES;
  if (pages !== Math.ceil(r.sizeBytes / ps))
    throw new HostError('invalid_region', `region '${r.name}' of ${r.sizeBytes} bytes should have ${Math.ceil(r.sizeBytes / ps)} pages, not ${pages}`);
  return pages;
}

// Copies both hash arrays into one word array, 4 words per page: the byte
// order of the words does not matter, only that both sides of a comparison
// use the same.
function interleave(primary: Uint8Array, confirm: Uint8Array, pages: number): Uint32Array {
  const out = new Uint8Array(pages * 16);
  for (let p = 0; p < pages; p++) {
    out.set(primary.subarray(p * 8, p * 8 + 8), p * 16);
    out.set(confirm.subarray(p * 8, p * 8 + 8), p * 16 + 8);
  }
  return new Uint32Array(out.buffer);
}
