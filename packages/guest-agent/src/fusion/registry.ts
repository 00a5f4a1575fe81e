// The agent's shared regions: memory a guest application expects other guests
// to hold too (a data file, a model, a WebAssembly module). The registry owns
// page-aligned memory for each, hashes its pages once, hands out the
// SharedRegion frames the connection sends, and marks the regions mergeable
// when the host turns page fusion on. It does no I/O on the network and logs
// nothing; the connection listens to its changes.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import type { SharedRegion } from '@memballoon/protocol';
import { DEFAULT_PAGE_SIZE_BYTES, allocateAligned, toAligned, type AlignedMemory, type RegionData } from './aligned.js';
import { libcMergeAdvisor, type MergeAdvisor } from './advise.js';
import { AgentError } from '../errors.js';
import { regionFrames } from './frames.js';
import { createPageHasher, type PageHasher, type PageHashes } from './hashing.js';

/** What registerSharedRegion takes: a named, versioned piece of memory. */
export interface SharedRegionInput {
  name: string;
  version: string;
  data: RegionData;
}

/** A registered region, as the registry and its listeners see it. */
export interface RegisteredRegion {
  readonly regionId: number;
  readonly name: string;
  readonly version: string;
  readonly sizeBytes: number;
  readonly pageCount: number;
  /** The region's memory (page-aligned); a guest application reads it. */
  readonly bytes: Uint8Array;
  /** Whether the data was copied into memory of the registry's own. */
  readonly copied: boolean;
  /** Whether madvise(MADV_MERGEABLE) succeeded for it. */
  readonly mergeable: boolean;
}

/** The handle registerSharedRegion returns. */
export interface SharedRegionHandle extends RegisteredRegion {
  /** Stops sharing: the host is told, the registry drops its memory. Idempotent. */
  release(): void;
}

/** A change the connection relays to the host. */
export type RegistryChange = { type: 'added'; region: RegisteredRegion } | { type: 'removed'; regionId: number };

/** The state of the mergeable advice over all regions. */
export interface MergeState {
  /** Page fusion is on for this guest (the host said so in Welcome). */
  wanted: boolean;
  /** Regions advised mergeable / regions in total. */
  mergeableRegions: number;
  regions: number;
  /** Why advice failed, '' when it did not. */
  detail: string;
}

/** Options of createSharedRegionRegistry. */
export interface RegistryOptions {
  hasher?: PageHasher;
  advisor?: MergeAdvisor;
  pageSizeBytes?: number;
}

/** Options of registerFile. */
export interface FileRegionOptions {
  /** Default: the file's base name. */
  name?: string;
  /** Default: size and modification time, which change when the file does. */
  version?: string;
}

interface Entry {
  regionId: number;
  name: string;
  version: string;
  memory: AlignedMemory;
  hashes: PageHashes;
  mergeable: boolean;
}

// The wire's region_id is a uint32, chosen by the guest and unique per session.
const MAX_REGION_ID = 0xffff_ffff;

/** The agent's registry of shared regions. */
export class SharedRegionRegistry {
  readonly #hasher: PageHasher;
  readonly #advisor: MergeAdvisor;
  readonly #pageSizeBytes: number;
  readonly #entries = new Map<number, Entry>();
  readonly #listeners = new Set<(change: RegistryChange) => void>();
  #nextId = 1;
  #wantMergeable = false;
  #adviceDetail = '';

  constructor(hasher: PageHasher, opts: Omit<RegistryOptions, 'hasher'> = {}) {
    this.#hasher = hasher;
    this.#advisor = opts.advisor ?? libcMergeAdvisor;
    this.#pageSizeBytes = opts.pageSizeBytes ?? DEFAULT_PAGE_SIZE_BYTES;
  }

  /** Registers memory others probably hold too; copies it into page-aligned memory unless it already is. */
  register(input: SharedRegionInput): SharedRegionHandle {
    if (typeof input?.name !== 'string' || input.name.length === 0) throw new AgentError('invalid_region', 'a shared region needs a name');
    if (typeof input.version !== 'string') throw new AgentError('invalid_region', 'a shared region needs a version (a string)');
    return this.#add(input.name, input.version, toAligned(input.data, this.#pageSizeBytes));
  }

  /** Loads a file into page-aligned memory and registers it (`balloon-agent --share-file PATH`). */
  registerFile(path: string, opts: FileRegionOptions = {}): SharedRegionHandle {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new AgentError('file_unreadable', `cannot open ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new AgentError('file_unreadable', `${path} is not a regular file`);
      if (st.size === 0) throw new AgentError('invalid_region', `${path} is empty`);
      const memory = allocateAligned(st.size, this.#pageSizeBytes);
      for (let at = 0; at < st.size; ) {
        const n = readSync(fd, memory.bytes, at, st.size - at, at);
        if (n === 0) throw new AgentError('file_unreadable', `${path} shrank while it was read (${at} of ${st.size} bytes)`);
        at += n;
      }
      return this.#add(opts.name ?? basename(path), opts.version ?? `${st.size}-${Math.trunc(st.mtimeMs)}`, memory);
    } catch (err) {
      throw AgentError.from(err, 'file_unreadable');
    } finally {
      closeSync(fd);
    }
  }

  /** The regions registered now, in registration order. */
  regions(): RegisteredRegion[] {
    return [...this.#entries.values()].map((e) => this.#view(e));
  }

  /** The SharedRegion frames of every region (sent after each Welcome). */
  frames(): SharedRegion[] {
    return [...this.#entries.values()].flatMap((e) => this.#frames(e));
  }

  /** The SharedRegion frames of one region (empty once it is released). */
  framesOf(regionId: number): SharedRegion[] {
    const e = this.#entries.get(regionId);
    return e ? this.#frames(e) : [];
  }

  /**
   * Turns the mergeable advice on or off for every region, now and for
   * regions registered later (Welcome.page_fusion). A failure is reported in
   * the result, never thrown: the hints are worth sending without KSM.
   */
  setMergeable(wanted: boolean): MergeState {
    this.#wantMergeable = wanted;
    this.#adviceDetail = '';
    for (const e of this.#entries.values()) this.#advise(e);
    return this.mergeState();
  }

  /** Whether the regions are advised mergeable, and why not where they are not. */
  mergeState(): MergeState {
    let mergeableRegions = 0;
    for (const e of this.#entries.values()) if (e.mergeable) mergeableRegions++;
    return { wanted: this.#wantMergeable, mergeableRegions, regions: this.#entries.size, detail: this.#adviceDetail };
  }

  /** Calls `listener` on every added or removed region; returns the unsubscribe function. */
  onChange(listener: (change: RegistryChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Releases every region. */
  releaseAll(): void {
    for (const id of [...this.#entries.keys()]) this.#release(id);
  }

  #add(name: string, version: string, memory: AlignedMemory): SharedRegionHandle {
    if (this.#nextId > MAX_REGION_ID) throw new AgentError('invalid_region', 'too many regions were registered in this process');
    const hashes = this.#hasher.hashPages(memory.bytes, this.#pageSizeBytes);
    const entry: Entry = { regionId: this.#nextId++, name, version, memory, hashes, mergeable: false };
    this.#entries.set(entry.regionId, entry);
    this.#advise(entry);
    const view = this.#view(entry);
    this.#emit({ type: 'added', region: view });
    const release = (): void => this.#release(entry.regionId);
    return Object.freeze({
      ...view,
      get mergeable() {
        return entry.mergeable;
      },
      release,
    });
  }

  #release(regionId: number): void {
    const e = this.#entries.get(regionId);
    if (!e) return;
    this.#entries.delete(regionId);
    // The caller's own memory goes back as it came; our copy is simply
    // dropped (unmerging memory about to be freed would only cost copies).
    if (e.mergeable && !e.memory.copied) this.#advisor.advise(e.memory.bytes, false);
    e.mergeable = false;
    this.#emit({ type: 'removed', regionId });
  }

  #advise(e: Entry): void {
    if (e.mergeable === this.#wantMergeable) return;
    const r = this.#advisor.advise(e.memory.bytes, this.#wantMergeable);
    if (r.ok) e.mergeable = this.#wantMergeable;
    else this.#adviceDetail = `region '${e.name}': ${r.message}`;
  }

  #frames(e: Entry): SharedRegion[] {
    return regionFrames(
      {
        regionId: e.regionId,
        name: e.name,
        version: e.version,
        sizeBytes: e.memory.bytes.byteLength,
        pageSizeBytes: this.#pageSizeBytes,
        mergeable: e.mergeable,
      },
      e.hashes,
    );
  }

  #view(e: Entry): RegisteredRegion {
    return {
      regionId: e.regionId,
      name: e.name,
      version: e.version,
      sizeBytes: e.memory.bytes.byteLength,
      pageCount: e.hashes.pageCount,
      bytes: e.memory.bytes,
      copied: e.memory.copied,
      mergeable: e.mergeable,
    };
  }

  #emit(change: RegistryChange): void {
    // A listener's failure must not undo a registration or a release.
    for (const l of this.#listeners) {
      try {
        l(change);
      } catch {
        /* the listener owns its errors */
      }
    }
  }
}

/** Makes a registry with the real hasher (XXH64 + SHA-256/64) and libc madvise unless told otherwise. */
export async function createSharedRegionRegistry(opts: RegistryOptions = {}): Promise<SharedRegionRegistry> {
  const hasher = opts.hasher ?? (await createPageHasher());
  return new SharedRegionRegistry(hasher, opts);
}
