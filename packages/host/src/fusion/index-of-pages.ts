// The counting core of the sharing table: for every page content (primary and
// confirming hash, and page size) which VMs hold it and how often. It answers
// in O(1) how many bytes of a VM another VM holds too, and how many bytes
// merging would save host-wide, because both are kept up to date on every
// add and remove instead of being recomputed.
//
// Identity is the whole key: two pages whose primary hashes collide but whose
// confirming hashes differ are different contents and never count as shared.

/** A content key: page size and both hashes, as a short string (Map keys compare by value). */
export type PageKey = string;

/** Makes the key of a page from its two 64-bit hashes, each given as four 16-bit words. */
export function pageKey(log2PageSize: number, words: Uint16Array, at: number): PageKey {
  return String.fromCharCode(
    log2PageSize,
    words[at]!, words[at + 1]!, words[at + 2]!, words[at + 3]!,
    words[at + 4]!, words[at + 5]!, words[at + 6]!, words[at + 7]!,
  );
}

// Holders of one content: parallel arrays of VM index and copies. Few VMs
// hold any one content, so a linear scan beats a Map per entry, in time and
// far more in memory.
interface Holders {
  vms: number[];
  copies: number[];
}

/** Counts, per VM and host-wide, the bytes whose content another VM holds too. */
export class PageIndex {
  readonly #contents = new Map<PageKey, Holders>();
  readonly #sharableBytes: number[] = [];
  #savingBytes = 0;
  #totalSharableBytes = 0;

  /** Bytes of VM `vm` whose content at least one other VM holds. */
  sharableBytes(vm: number): number {
    return this.#sharableBytes[vm] ?? 0;
  }

  /** The sum of sharableBytes over all VMs. */
  totalSharableBytes(): number {
    return this.#totalSharableBytes;
  }

  /** Bytes merging would save host-wide: per content, (VMs holding it - 1) pages. */
  savingBytes(): number {
    return this.#savingBytes;
  }

  /** Distinct contents held by anyone. */
  contents(): number {
    return this.#contents.size;
  }

  /** VM `vm` holds one more page of this content. */
  add(vm: number, key: PageKey, pageBytes: number): void {
    let h = this.#contents.get(key);
    if (!h) {
      h = { vms: [], copies: [] };
      this.#contents.set(key, h);
    }
    const i = h.vms.indexOf(vm);
    if (i >= 0) {
      h.copies[i]! += 1;
      if (h.vms.length >= 2) this.#bump(vm, pageBytes);
      return;
    }
    h.vms.push(vm);
    h.copies.push(1);
    if (h.vms.length === 2) {
      // The content just became shared: the first holder's copies all count now.
      const other = h.vms[0]!;
      this.#bump(other, h.copies[0]! * pageBytes);
    }
    if (h.vms.length >= 2) {
      this.#bump(vm, pageBytes);
      this.#savingBytes += pageBytes;
    }
  }

  /** VM `vm` holds one page of this content less. */
  remove(vm: number, key: PageKey, pageBytes: number): void {
    const h = this.#contents.get(key);
    const i = h ? h.vms.indexOf(vm) : -1;
    if (!h || i < 0) return;
    const shared = h.vms.length >= 2;
    if (shared) this.#bump(vm, -pageBytes);
    if (h.copies[i]! > 1) {
      h.copies[i]! -= 1;
      return;
    }
    h.vms.splice(i, 1);
    h.copies.splice(i, 1);
    if (shared) this.#savingBytes -= pageBytes;
    if (h.vms.length === 1) {
      // The last other holder is alone now: none of its copies count any more.
      this.#bump(h.vms[0]!, -h.copies[0]! * pageBytes);
    } else if (h.vms.length === 0) {
      this.#contents.delete(key);
    }
  }

  #bump(vm: number, bytes: number): void {
    this.#sharableBytes[vm] = (this.#sharableBytes[vm] ?? 0) + bytes;
    this.#totalSharableBytes += bytes;
  }
}
