// Connections that have not said Hello yet: strangers, who may hold a socket
// only briefly and only so many at once. A fixed cap that refuses newcomers
// lets a flood of idle sockets lock every real guest out (issue 12.14); so at
// the cap the newcomer is let in and a stranger is dropped instead: the oldest
// one from the address that holds the most. A flood from one address then
// only evicts itself, and a guest (which says Hello as soon as its socket
// opens) is the youngest of its address, the last to go. Pure: no sockets.

/** One connection waiting for its Hello. */
interface Pending {
  address: string;
  evict: () => void;
  released: boolean;
}

/** The set of connections before Hello, with eviction at the cap. */
export class PendingConnections {
  // Insertion order of each address's array is age order: oldest first.
  private readonly byAddress = new Map<string, Pending[]>();
  private total = 0;

  constructor(private readonly maxTotal: number) {}

  /** How many connections are waiting for their Hello. */
  get size(): number {
    return this.total;
  }

  /** How many of them come from `address`. */
  countOf(address: string): number {
    return this.byAddress.get(address)?.length ?? 0;
  }

  /**
   * Adds a connection; if that passes the cap, evicts one (calling its
   * `evict`, which must close it). Returns the release function to call
   * once the connection said Hello or closed (idempotent).
   */
  add(address: string, evict: () => void): () => void {
    const entry: Pending = { address, evict, released: false };
    const list = this.byAddress.get(address) ?? [];
    list.push(entry);
    this.byAddress.set(address, list);
    this.total++;
    const release = (): void => this.release(entry);
    while (this.total > this.maxTotal) {
      const victim = this.oldestOfHeaviest();
      if (!victim) break;
      this.release(victim);
      victim.evict();
    }
    return release;
  }

  private release(entry: Pending): void {
    if (entry.released) return;
    entry.released = true;
    const list = this.byAddress.get(entry.address);
    if (!list) return;
    const i = list.indexOf(entry);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byAddress.delete(entry.address);
    this.total--;
  }

  private oldestOfHeaviest(): Pending | undefined {
    let heaviest: Pending[] | undefined;
    for (const list of this.byAddress.values()) if (!heaviest || list.length > heaviest.length) heaviest = list;
    return heaviest?.[0];
  }
}
