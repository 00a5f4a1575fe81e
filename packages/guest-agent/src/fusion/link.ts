// The registry's side of a session with the host: after every Welcome (the
// first and each after a reconnect) the host learns every region again, and
// while the session lasts it hears of each region added or released. The
// agent calls three methods; the link sends through the function it is given.
import { bodies, type Body } from '@memballoon/protocol';
import type { MergeState, SharedRegionRegistry } from './registry.js';

/** Sends one frame to the host; false when the socket is not open (the next Welcome resends). */
export type SendFrame = (body: Body) => boolean;

/** Options of FusionLink. */
export interface FusionLinkOptions {
  /** Told after each Welcome how the mergeable advice went (the CLI logs it; a library never logs). */
  onMergeState?: (state: MergeState, pageFusion: boolean) => void;
}

/** Keeps the host's view of the registry's regions current across sessions. */
export class FusionLink {
  readonly #registry: SharedRegionRegistry;
  readonly #onMergeState: FusionLinkOptions['onMergeState'];
  #send: SendFrame | null = null;
  readonly #unsubscribe: () => void;

  constructor(registry: SharedRegionRegistry, opts: FusionLinkOptions = {}) {
    this.#registry = registry;
    this.#onMergeState = opts.onMergeState;
    this.#unsubscribe = registry.onChange((change) => {
      const send = this.#send;
      if (!send) return;
      if (change.type === 'added') for (const f of registry.framesOf(change.region.regionId)) send(bodies.sharedRegion(f));
      else send(bodies.sharedRegionRemoved({ regionId: change.regionId }));
    });
  }

  /**
   * A session was welcomed: advise the regions mergeable when the host wants
   * page fusion (unmergeable otherwise), then send every region's frames.
   */
  welcomed(pageFusion: boolean, send: SendFrame): MergeState {
    const state = this.#registry.setMergeable(pageFusion);
    this.#send = send;
    for (const f of this.#registry.frames()) send(bodies.sharedRegion(f));
    this.#onMergeState?.(state, pageFusion);
    return state;
  }

  /** The session ended: nothing is sent until the next Welcome. */
  disconnected(): void {
    this.#send = null;
  }

  /** The agent stops: regions are released (the host forgets them with the session). */
  close(): void {
    this.#send = null;
    this.#unsubscribe();
    this.#registry.releaseAll();
  }
}
