// The counting core of the sharing table: for every page content (primary and
// confirming hash, and page size) which VMs hold it and how often. It answers
// in O(1) how many bytes of a VM another VM holds too, and how many bytes
// merging would save host-wide, because both are kept up to date on every
// add and remove instead of being recomputed.
//
// Identity is the whole key: two pages whose primary hashes collide but whose
// confirming hashes differ are different contents and never count as shared.
//
// Why typed arrays instead of a Map of objects: a host keeps up to a million
// of these per few VMs, and a Map entry with a string key and a holder object
// cost about 470 bytes per content (measured); here a content costs about 50
// bytes (open addressing at load <= 1/2, linear probing, deletion by backward
// shift so no tombstones pile up) plus 12 bytes per VM holding it (a pooled
// linked list). Adding 262,144 pages took 1.4 s with the Map; a host must not
// stall its sessions that long.

/** Words of a page's key: primary hash low, high, confirming hash low, high. */
export const KEY_WORDS = 4;

const EMPTY = 0; // slot marker: log2 page size is at least 12, so 0 is free
const NO_NODE = -1;
const MIN_CAPACITY = 1024;

/** Counts, per VM and host-wide, the bytes whose content another VM holds too. */
export class PageIndex {
  // Slots.
  #capacity = MIN_CAPACITY;
  #count = 0;
  #keys = new Uint32Array(MIN_CAPACITY * KEY_WORDS);
  #log2 = new Uint8Array(MIN_CAPACITY);
  #holders = new Uint16Array(MIN_CAPACITY);
  #head = new Int32Array(MIN_CAPACITY).fill(NO_NODE);
  // Holder nodes: (vm, copies) of one content, linked per slot.
  #nodeVm = new Int32Array(MIN_CAPACITY);
  #nodeCopies = new Uint32Array(MIN_CAPACITY);
  #nodeNext = new Int32Array(MIN_CAPACITY);
  #nodeTop = 0;
  #nodeFree = NO_NODE;
  // The answers.
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
    return this.#count;
  }

  /** VM `vm` holds one more page whose key is words[at..at+4) (page size 2^log2). */
  add(vm: number, words: Uint32Array, at: number, log2: number): void {
    const slot = this.#findOrInsert(words, at, log2);
    const pageBytes = 2 ** log2;
    let n = this.#head[slot]!;
    while (n !== NO_NODE && this.#nodeVm[n] !== vm) n = this.#nodeNext[n]!;
    if (n !== NO_NODE) {
      this.#nodeCopies[n]! += 1;
      if (this.#holders[slot]! >= 2) this.#bump(vm, pageBytes);
      return;
    }
    n = this.#allocNode();
    this.#nodeVm[n] = vm;
    this.#nodeCopies[n] = 1;
    this.#nodeNext[n] = this.#head[slot]!;
    this.#head[slot] = n;
    const holders = (this.#holders[slot]! += 1);
    if (holders === 2) {
      // The content just became shared: the first holder's copies all count now.
      const other = this.#nodeNext[n]!;
      this.#bump(this.#nodeVm[other]!, this.#nodeCopies[other]! * pageBytes);
    }
    if (holders >= 2) {
      this.#bump(vm, pageBytes);
      this.#savingBytes += pageBytes;
    }
  }

  /** VM `vm` holds one page of this content less. */
  remove(vm: number, words: Uint32Array, at: number, log2: number): void {
    const slot = this.#find(words, at, log2);
    if (slot < 0) return;
    let prev = NO_NODE;
    let n = this.#head[slot]!;
    while (n !== NO_NODE && this.#nodeVm[n] !== vm) {
      prev = n;
      n = this.#nodeNext[n]!;
    }
    if (n === NO_NODE) return;
    const pageBytes = 2 ** log2;
    const shared = this.#holders[slot]! >= 2;
    if (shared) this.#bump(vm, -pageBytes);
    if (this.#nodeCopies[n]! > 1) {
      this.#nodeCopies[n]! -= 1;
      return;
    }
    if (prev === NO_NODE) this.#head[slot] = this.#nodeNext[n]!;
    else this.#nodeNext[prev] = this.#nodeNext[n]!;
    this.#freeNode(n);
    const holders = (this.#holders[slot]! -= 1);
    if (shared) this.#savingBytes -= pageBytes;
    if (holders === 1) {
      // The last other holder is alone now: none of its copies count any more.
      const h = this.#head[slot]!;
      this.#bump(this.#nodeVm[h]!, -this.#nodeCopies[h]! * pageBytes);
    } else if (holders === 0) {
      this.#deleteSlot(slot);
    }
  }

  #bump(vm: number, bytes: number): void {
    this.#sharableBytes[vm] = (this.#sharableBytes[vm] ?? 0) + bytes;
    this.#totalSharableBytes += bytes;
  }

  // Mixes both hashes: a weak primary (tests inject one) must not cluster.
  #home(k0: number, k1: number, k2: number, k3: number, log2: number): number {
    let h = Math.imul(k0 ^ Math.imul(k2, 0x85ebca6b), 0x9e3779b1);
    h ^= h >>> 15;
    h = Math.imul(h ^ k1 ^ Math.imul(k3, 0x27d4eb2f) ^ log2, 0xc2b2ae35);
    h ^= h >>> 13;
    return h & (this.#capacity - 1);
  }

  #find(words: Uint32Array, at: number, log2: number): number {
    const k0 = words[at]!,
      k1 = words[at + 1]!,
      k2 = words[at + 2]!,
      k3 = words[at + 3]!;
    const mask = this.#capacity - 1;
    for (let i = this.#home(k0, k1, k2, k3, log2); this.#log2[i] !== EMPTY; i = (i + 1) & mask) {
      if (this.#matches(i, k0, k1, k2, k3, log2)) return i;
    }
    return -1;
  }

  #findOrInsert(words: Uint32Array, at: number, log2: number): number {
    if ((this.#count + 1) * 2 > this.#capacity) this.#resize(this.#capacity * 2);
    const k0 = words[at]!,
      k1 = words[at + 1]!,
      k2 = words[at + 2]!,
      k3 = words[at + 3]!;
    const mask = this.#capacity - 1;
    let i = this.#home(k0, k1, k2, k3, log2);
    for (; this.#log2[i] !== EMPTY; i = (i + 1) & mask) {
      if (this.#matches(i, k0, k1, k2, k3, log2)) return i;
    }
    const k = i * KEY_WORDS;
    this.#keys[k] = k0;
    this.#keys[k + 1] = k1;
    this.#keys[k + 2] = k2;
    this.#keys[k + 3] = k3;
    this.#log2[i] = log2;
    this.#holders[i] = 0;
    this.#head[i] = NO_NODE;
    this.#count++;
    return i;
  }

  #matches(i: number, k0: number, k1: number, k2: number, k3: number, log2: number): boolean {
    const k = i * KEY_WORDS;
    const keys = this.#keys;
    return keys[k] === k0 && keys[k + 1] === k1 && keys[k + 2] === k2 && keys[k + 3] === k3 && this.#log2[i] === log2;
  }

  // Linear probing's deletion without tombstones: entries after the hole
  // that may move back into it do (Knuth's algorithm R).
  #deleteSlot(hole: number): void {
    const mask = this.#capacity - 1;
    this.#count--;
    let i = hole;
    for (let j = (i + 1) & mask; this.#log2[j] !== EMPTY; j = (j + 1) & mask) {
      const k = j * KEY_WORDS;
      const home = this.#home(this.#keys[k]!, this.#keys[k + 1]!, this.#keys[k + 2]!, this.#keys[k + 3]!, this.#log2[j]!);
      // The entry at j stays if its home lies cyclically in (i, j].
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      this.#moveSlot(j, i);
      i = j;
    }
    this.#log2[i] = EMPTY;
    this.#head[i] = NO_NODE;
    this.#holders[i] = 0;
  }

  #moveSlot(from: number, to: number): void {
    this.#keys.copyWithin(to * KEY_WORDS, from * KEY_WORDS, from * KEY_WORDS + KEY_WORDS);
    this.#log2[to] = this.#log2[from]!;
    this.#holders[to] = this.#holders[from]!;
    this.#head[to] = this.#head[from]!;
  }

  #resize(capacity: number): void {
    const keys = this.#keys,
      log2 = this.#log2,
      holders = this.#holders,
      head = this.#head,
      old = this.#capacity;
    this.#capacity = capacity;
    this.#keys = new Uint32Array(capacity * KEY_WORDS);
    this.#log2 = new Uint8Array(capacity);
    this.#holders = new Uint16Array(capacity);
    this.#head = new Int32Array(capacity).fill(NO_NODE);
    const mask = capacity - 1;
    for (let s = 0; s < old; s++) {
      if (log2[s] === EMPTY) continue;
      const k = s * KEY_WORDS;
      let i = this.#home(keys[k]!, keys[k + 1]!, keys[k + 2]!, keys[k + 3]!, log2[s]!);
      while (this.#log2[i] !== EMPTY) i = (i + 1) & mask;
      this.#keys.set(keys.subarray(k, k + KEY_WORDS), i * KEY_WORDS);
      this.#log2[i] = log2[s]!;
      this.#holders[i] = holders[s]!;
      this.#head[i] = head[s]!;
    }
  }

  #allocNode(): number {
    if (this.#nodeFree !== NO_NODE) {
      const n = this.#nodeFree;
      this.#nodeFree = this.#nodeNext[n]!;
      return n;
    }
    if (this.#nodeTop === this.#nodeVm.length) {
      const grow = <T extends Int32Array | Uint32Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.#nodeVm = grow(this.#nodeVm, (n) => new Int32Array(n));
      this.#nodeCopies = grow(this.#nodeCopies, (n) => new Uint32Array(n));
      this.#nodeNext = grow(this.#nodeNext, (n) => new Int32Array(n));
    }
    return this.#nodeTop++;
  }

  #freeNode(n: number): void {
    this.#nodeNext[n] = this.#nodeFree;
    this.#nodeFree = n;
  }
}
