// The registry's side of a session with the host: after every Welcome (the
// first and each after a reconnect) the host learns every region again, and
// while the session lasts it hears of each region added or released. The
// agent calls three methods; the link sends through the function it is given.
//
// Frames are paced: the host caps a guest's frames per second (200 by
// default) and closes a session that goes over, so an application with
// hundreds of regions must not send them in one burst. Half the host's budget
// is left to the balloon's statuses and statistics.
import { bodies, type Body } from '@memballoon/protocol';
import type { MergeState, SharedRegionRegistry } from './registry.js';

/** Sends one frame to the host; false when the socket is not open (the next Welcome resends). */
export type SendFrame = (body: Body) => boolean;

/** Most page fusion frames the link sends per pacing window. */
export const FUSION_FRAMES_PER_WINDOW = 100;

/** The pacing window, in ms. */
export const FUSION_WINDOW_MS = 1000;

/** Options of FusionLink. */
export interface FusionLinkOptions {
  /** Told after each Welcome how the mergeable advice went (the CLI logs it; a library never logs). */
  onMergeState?: (state: MergeState, pageFusion: boolean) => void;
}

/** Keeps the host's view of the registry's regions current across sessions. */
export class FusionLink {
  readonly #registry: SharedRegionRegistry;
  readonly #onMergeState: FusionLinkOptions['onMergeState'];
  readonly #unsubscribe: () => void;
  #send: SendFrame | null = null;
  #queue: Body[] = [];
  #windowStartMs = 0;
  #sentInWindow = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(registry: SharedRegionRegistry, opts: FusionLinkOptions = {}) {
    this.#registry = registry;
    this.#onMergeState = opts.onMergeState;
    this.#unsubscribe = registry.onChange((change) => {
      if (!this.#send) return;
      if (change.type === 'added') for (const f of registry.framesOf(change.region.regionId)) this.#queue.push(bodies.sharedRegion(f));
      else this.#queue.push(bodies.sharedRegionRemoved({ regionId: change.regionId }));
      this.#drain();
    });
  }

  /**
   * A session was welcomed: advise the regions mergeable when the host wants
   * page fusion (unmergeable otherwise), then send every region's frames.
   */
  welcomed(pageFusion: boolean, send: SendFrame): MergeState {
    const state = this.#registry.setMergeable(pageFusion);
    this.#send = send;
    this.#queue = this.#registry.frames().map((f) => bodies.sharedRegion(f));
    this.#drain();
    this.#onMergeState?.(state, pageFusion);
    return state;
  }

  /** The session ended: nothing is sent until the next Welcome (which resends everything). */
  disconnected(): void {
    this.#send = null;
    this.#queue = [];
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The agent stops: regions are released (the host forgets them with the session). */
  close(): void {
    this.disconnected();
    this.#unsubscribe();
    this.#registry.releaseAll();
  }

  #drain(): void {
    if (this.#timer || !this.#send) return;
    const now = Date.now();
    if (now - this.#windowStartMs >= FUSION_WINDOW_MS) {
      this.#windowStartMs = now;
      this.#sentInWindow = 0;
    }
    while (this.#queue.length > 0 && this.#sentInWindow < FUSION_FRAMES_PER_WINDOW) {
      this.#send(this.#queue.shift()!);
      this.#sentInWindow++;
    }
    if (this.#queue.length > 0) {
      this.#timer = setTimeout(
        () => {
          this.#timer = undefined;
          this.#drain();
        },
        this.#windowStartMs + FUSION_WINDOW_MS - now,
      );
      this.#timer.unref();
    }
  }
}
