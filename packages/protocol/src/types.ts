// Plain TypeScript shapes of the protocol's messages. The rest of the code base
// uses these, never the generated classes. Every number is a plain JS number
// (a safe integer for integer fields); every quantity carries its unit.

/** Enum names in wire order: the index of a name is its number on the wire. */
export const BALLOON_STATES = ['unspecified', 'steady', 'inflating', 'deflating', 'short'] as const;
export const SHORTFALL_REASONS = [
  // SHORTFALL_REASON_UNSPECIFIED on the wire: the balloon is not short.
  'none',
  'out_of_memory',
  'guest_floor',
  'guest_pressure',
  'not_permitted',
  'cancelled',
] as const;
export const LOCK_STATES = ['unspecified', 'locked', 'not_permitted', 'unsupported', 'disabled'] as const;
export const MEMORY_DOMAINS = ['unspecified', 'machine', 'cgroup', 'process'] as const;
export const GOODBYE_REASONS = ['unspecified', 'shutdown', 'restart', 'replaced'] as const;

/** Where the balloon is heading, or that it stopped short. */
export type BalloonState = (typeof BALLOON_STATES)[number];
/** Why a balloon stopped short of its target. */
export type ShortfallReason = (typeof SHORTFALL_REASONS)[number];
/** Whether balloon memory is pinned, and if not, why. */
export type LockState = (typeof LOCK_STATES)[number];
/** How the agent measures its guest's memory. */
export type MemoryDomain = (typeof MEMORY_DOMAINS)[number];
/** Why a session ends on purpose. */
export type GoodbyeReason = (typeof GOODBYE_REASONS)[number];

/** What a guest can do. */
export interface Capabilities {
  pin: boolean;
  pageFusion: boolean;
  deflateOnPressure: boolean;
}

/** Facts about the guest, sent once per session. */
export interface GuestFacts {
  pid: number;
  totalMemoryMib: number;
  pageSizeBytes: number;
  chunkSizeMib: number;
  capabilities: Capabilities;
  domain: MemoryDomain;
  hostname: string;
}

/** The balloon a guest holds right now. */
export interface BalloonHeld {
  actualMib: number;
  lockedMib: number;
  generation: number;
  targetMib: number;
  /** Part of actualMib handed off to the host's limit (0 when absent). */
  handedOffMib?: number;
}

/** guest → host: the first frame of a session. */
export interface Hello {
  vmName: string;
  credential: string;
  agentVersion: string;
  facts: GuestFacts;
  balloon: BalloonHeld;
}

/** Settings that protect a guest from its own balloon. */
export interface GuestProtection {
  /** 0: the agent's default floor. */
  floorMib: number;
  deflateOnPressure: boolean;
}

/** host → guest: the answer to Hello. */
export interface Welcome {
  sessionId: string;
  targetMib: number;
  generation: number;
  statsIntervalMs: number;
  heartbeatIntervalMs: number;
  protection: GuestProtection;
  pageFusion: boolean;
}

/** host → guest: the balloon's new target; the latest generation wins. */
export interface SetBalloonTarget {
  targetMib: number;
  generation: number;
}

/**
 * host → guest: the host lowered the guest's limit by what it takes over;
 * release pinned chunks until handedOffMib of the balloon are handed off.
 */
export interface HandOffBalloon {
  handedOffMib: number;
}

/** guest → host: progress and result of the balloon. */
export interface BalloonStatus {
  generation: number;
  targetMib: number;
  /** pinned + handed off. */
  actualMib: number;
  lockedMib: number;
  /** Part of actualMib whose pages were released to the host's limit (0 when absent). */
  handedOffMib?: number;
  state: BalloonState;
  reason: ShortfallReason;
  lock: LockState;
  detail: string;
}

/** guest → host: the guest's memory statistics (the virtio-balloon set and more). */
export interface MemoryStats {
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
  diskCachesBytes: number;
  swapInBytes: number;
  swapOutBytes: number;
  majorFaults: number;
  minorFaults: number;
  psiSomeAvg10Percent: number;
  psiFullAvg10Percent: number;
  agentRssBytes: number;
  sharedBytes: number;
  domain: MemoryDomain;
}

/** Either side: an error with a closed code. */
export interface ErrorBody {
  code: import('./errors.js').ErrorCode;
  message: string;
  retryAfterMs: number;
}

/** Either side: the session ends on purpose. */
export interface Goodbye {
  reason: GoodbyeReason;
  message: string;
}

/** guest → host: page hashes of a region others probably hold too (page fusion hint). */
export interface SharedRegion {
  regionId: number;
  name: string;
  version: string;
  sizeBytes: number;
  pageSizeBytes: number;
  firstPage: number;
  /** PAGE_HASH_BYTES per page, little-endian. */
  pageHashes: Uint8Array;
  /** An independent second hash per page, same layout. */
  confirmHashes: Uint8Array;
  mergeable: boolean;
  last: boolean;
}

/** guest → host: the guest no longer holds a region. */
export interface SharedRegionRemoved {
  regionId: number;
}

/** The body of a frame: exactly one message, tagged by its case. */
export type Body =
  | { case: 'hello'; value: Hello }
  | { case: 'welcome'; value: Welcome }
  | { case: 'setBalloonTarget'; value: SetBalloonTarget }
  | { case: 'balloonStatus'; value: BalloonStatus }
  | { case: 'memoryStats'; value: MemoryStats }
  | { case: 'error'; value: ErrorBody }
  | { case: 'goodbye'; value: Goodbye }
  | { case: 'sharedRegion'; value: SharedRegion }
  | { case: 'sharedRegionRemoved'; value: SharedRegionRemoved }
  | { case: 'handOffBalloon'; value: HandOffBalloon };

/** The case names of Body. */
export type BodyCase = Body['case'];

/** The message type of one case of Body. */
export type BodyOf<C extends BodyCase> = Extract<Body, { case: C }>['value'];

/** One decoded frame. */
export interface Frame {
  protocolVersion: number;
  seq: number;
  body: Body;
}
