// One guest session's page-fusion hints: SharedRegion frames are put
// together into regions (a large region comes in several frames) and handed
// to the sharing table; a removed region or the end of the session takes
// them out again. Pure, like the table: the session calls it and answers a
// HostError with an Error frame of its wireCode.
import type { SharedRegion, SharedRegionRemoved } from '@memballoon/protocol';
import { HostError } from '../errors.js';
import type { SharingTable, VmSharing } from './table.js';

interface Pending {
  first: SharedRegion;
  nextPage: number;
  pageHashes: Uint8Array[];
  confirmHashes: Uint8Array[];
  pages: number;
}

/** The hints of one VM's current session. */
export class SessionHints {
  readonly #table: SharingTable;
  readonly #vm: string;
  readonly #pending = new Map<number, Pending>();
  #closed = false;

  constructor(table: SharingTable, vm: string) {
    this.#table = table;
    this.#vm = vm;
  }

  /**
   * Takes one SharedRegion frame; returns true when it completed its region
   * (the table then counts it). Throws HostError on a gap, a mismatch or
   * more pages than the VM may hint; the partial region is dropped then.
   */
  onSharedRegion(frame: SharedRegion): boolean {
    if (this.#closed) return false;
    try {
      return this.#accept(frame);
    } catch (err) {
      this.#pending.delete(frame.regionId);
      throw HostError.from(err, 'invalid_region');
    }
  }

  /** The guest no longer holds a region. */
  onSharedRegionRemoved(body: SharedRegionRemoved): void {
    this.#pending.delete(body.regionId);
    this.#table.removeRegion(this.#vm, body.regionId);
  }

  /** What the table knows of this VM now. */
  sharing(): VmSharing {
    return this.#table.vm(this.#vm);
  }

  /** The session ended: all of this VM's hints go. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#pending.clear();
    this.#table.removeVm(this.#vm);
  }

  #accept(f: SharedRegion): boolean {
    const pages = f.pageHashes.byteLength / 8;
    let p = this.#pending.get(f.regionId);
    if (f.firstPage === 0) {
      // A region sent again (after a reconnect, or changed) starts over.
      p = { first: f, nextPage: 0, pageHashes: [], confirmHashes: [], pages: 0 };
      this.#pending.set(f.regionId, p);
    } else if (!p) {
      throw new HostError('invalid_region', `region ${f.regionId} ('${f.name}') starts at page ${f.firstPage}, not 0`);
    }
    const h = p.first;
    if (f.firstPage !== p.nextPage) throw new HostError('invalid_region', `region ${f.regionId} ('${h.name}') jumps from page ${p.nextPage} to ${f.firstPage}`);
    if (f.name !== h.name || f.version !== h.version || f.sizeBytes !== h.sizeBytes || f.pageSizeBytes !== h.pageSizeBytes || f.mergeable !== h.mergeable) {
      throw new HostError('invalid_region', `region ${f.regionId} ('${h.name}') changed its name, version, size or page size between frames`);
    }
    // The cap is checked as frames arrive, so a guest cannot make the host
    // buffer more than it would ever keep.
    let pendingPages = 0;
    for (const q of this.#pending.values()) pendingPages += q.pages;
    if (pendingPages + pages > this.#table.remainingPages(this.#vm) + this.#replacedPages(f.regionId)) {
      throw new HostError(
        'too_many_pages',
        `VM '${this.#vm}' hints more than the host's limit of ${this.#table.maxHintedPagesPerVm} pages per VM (region '${h.name}')`,
      );
    }
    // Copies: the frame's bytes are views into a received message.
    p.pageHashes.push(f.pageHashes.slice());
    p.confirmHashes.push(f.confirmHashes.slice());
    p.pages += pages;
    p.nextPage += pages;
    if (!f.last) return false;
    this.#pending.delete(f.regionId);
    this.#table.putRegion(this.#vm, {
      regionId: f.regionId,
      name: h.name,
      version: h.version,
      sizeBytes: h.sizeBytes,
      pageSizeBytes: h.pageSizeBytes,
      pageHashes: concat(p.pageHashes, p.pages * 8),
      confirmHashes: concat(p.confirmHashes, p.pages * 8),
      mergeable: h.mergeable,
    });
    return true;
  }

  #replacedPages(regionId: number): number {
    const r = this.#table.regions(this.#vm).find((x) => x.regionId === regionId);
    return r ? Math.ceil(r.sizeBytes / r.pageSizeBytes) : 0;
  }
}

function concat(parts: Uint8Array[], bytes: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}
