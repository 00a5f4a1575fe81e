// The library face of page fusion for an embedding application: one call
// makes the registry and the session plugin; the plugin goes to startAgent
// as `fusion`, and the application registers what it expects others to hold.
import type { SharedRegionHandle, SharedRegionInput, FileRegionOptions, RegistryOptions, SharedRegionRegistry } from './registry.js';
import { createSharedRegionRegistry } from './registry.js';
import { FusionLink, type FusionLinkOptions } from './link.js';

/** Page fusion of one agent. */
export interface PageFusion {
  /** The regions and their hashes. */
  readonly registry: SharedRegionRegistry;
  /** Pass as startAgent's `fusion` option. */
  readonly plugin: FusionLink;
  /** Registers memory other guests probably hold too; the handle's release() withdraws it. */
  registerSharedRegion(input: SharedRegionInput): SharedRegionHandle;
  /** Loads a file into page-aligned memory and registers it (`--share-file`). */
  shareFile(path: string, opts?: FileRegionOptions): SharedRegionHandle;
}

/** Makes an agent's page fusion: `startAgent({ …, fusion: pf.plugin })`, then `pf.registerSharedRegion(…)`. */
export async function createPageFusion(opts: RegistryOptions & FusionLinkOptions = {}): Promise<PageFusion> {
  const registry = await createSharedRegionRegistry(opts);
  const plugin = new FusionLink(registry, opts);
  return {
    registry,
    plugin,
    registerSharedRegion: (input) => registry.register(input),
    shareFile: (path, fileOpts) => registry.registerFile(path, fileOpts),
  };
}
