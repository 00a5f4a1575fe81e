// Encoding and decoding of frames. This file and the generated code are the
// only places that know protobufjs; decodeFrame turns untrusted bytes into
// validated plain objects or throws a ProtocolError, never anything else.
import $protobuf from 'protobufjs/minimal.js';
import { memballoon } from './generated/memballoon.js';
import { ERROR_CODES, ProtocolError, type ErrorCode } from './errors.js';
import {
  MAX_CHUNK_MIB,
  MAX_CREDENTIAL_CHARS,
  MAX_FRAME_BYTES,
  MAX_GENERATION,
  MAX_HELLO_GENERATION,
  MAX_INTERVAL_MS,
  MAX_MEMORY_MIB,
  MAX_PAGE_SIZE_BYTES,
  MAX_PAGES_PER_REGION_FRAME,
  MAX_TEXT_CHARS,
  MAX_VM_NAME_CHARS,
  MIN_PAGE_SIZE_BYTES,
  PAGE_HASH_BYTES,
  PROTOCOL_VERSION,
  VM_NAME_PATTERN,
} from './wire.js';
import {
  BALLOON_STATES,
  GOODBYE_REASONS,
  LOCK_STATES,
  MEMORY_DOMAINS,
  SHORTFALL_REASONS,
  type Body,
  type BodyCase,
  type BodyOf,
  type Frame,
  type Hello,
  type MemoryStats,
} from './types.js';

// uint64 fields decode to Long objects while protobufjs can find 'long'; we
// want plain numbers (and check them against 2^53 ourselves), so unplug it
// once, before any decode. Only this package uses protobufjs.
$protobuf.util.Long = undefined as unknown as typeof $protobuf.util.Long;
$protobuf.configure();

const pb = memballoon.v1;

/** Context that tightens validation where the receiver knows more. */
export interface DecodeOptions {
  /** Largest frame accepted, in bytes (default MAX_FRAME_BYTES). */
  maxFrameBytes?: number;
  /** The guest's memory: targets and balloons above it are refused. */
  guestMemoryMib?: number;
  /**
   * The peer's sequence numbers: the frame's is checked as soon as the
   * envelope is read, before the body. A frame whose body is then refused
   * still used up its number, so the next good frame is not taken for a gap.
   */
  seq?: SeqTracker;
}

function fail(code: ErrorCode, message: string, cause?: unknown): never {
  throw new ProtocolError(code, message, cause === undefined ? undefined : { cause });
}

function uint(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  // Without Long, uint64 values past 2^53 arrive as imprecise floats: any
  // value that is not a safe integer is refused rather than rounded.
  const n = typeof value === 'number' ? value : Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0) fail('out_of_range', `${field} is not a valid unsigned integer (${String(value)})`);
  if (n > max) fail('out_of_range', `${field} is ${n}, above the limit of ${max}`);
  return n;
}

function mib(value: unknown, field: string, guestMemoryMib?: number, boundName = "the guest's memory"): number {
  const n = uint(value, field, MAX_MEMORY_MIB);
  if (guestMemoryMib !== undefined && n > guestMemoryMib) {
    fail('out_of_range', `${field} is ${n} MiB, above ${boundName} of ${guestMemoryMib} MiB`);
  }
  return n;
}

function text(value: unknown, field: string, maxChars = MAX_TEXT_CHARS): string {
  const s = typeof value === 'string' ? value : '';
  if (s.length > maxChars) fail('out_of_range', `${field} is ${s.length} characters long, above the limit of ${maxChars}`);
  return s;
}

function percent(value: unknown, field: string): number {
  const n = typeof value === 'number' ? value : 0;
  if (!Number.isFinite(n) || n < 0 || n > 100) fail('out_of_range', `${field} is ${n}, not a percentage`);
  return n;
}

/**
 * An enum's name. A value this side does not know (a newer peer's: proto3
 * keeps unknown enum values) reads as the enum's UNSPECIFIED, index 0, as
 * the .proto's header says: a Goodbye with a reason from a later version
 * still ends the session, an Error with a newer code is still an error.
 */
function enumName<T extends readonly string[]>(names: T, value: unknown): T[number] {
  const n = typeof value === 'number' && Number.isInteger(value) ? value : 0;
  return names[n] ?? names[0]!;
}

function enumNumber<T extends readonly string[]>(names: T, name: T[number]): number {
  const n = names.indexOf(name);
  if (n < 0) throw new ProtocolError('invalid_argument', `unknown enum value '${name}'`);
  return n;
}

/** Checks a VM name against the protocol's rules; returns a reason or null. */
export function vmNameProblem(name: string): string | null {
  if (name.length === 0) return 'the VM name is empty';
  if (name.length > MAX_VM_NAME_CHARS) return `the VM name is longer than ${MAX_VM_NAME_CHARS} characters`;
  if (!VM_NAME_PATTERN.test(name)) {
    if (/^\.+$/.test(name)) return `the VM name '${name}' is only dots, which a URL path would change; use letters or digits too`;
    return `the VM name '${name}' may hold only letters, digits, spaces, '.', '_' and '-', and may not start or end with a space`;
  }
  return null;
}

function bytesField(value: unknown): Uint8Array {
  // protobufjs hands out a view into the frame (a Buffer on Node): copy it into
  // a plain Uint8Array so the caller neither pins the frame nor sees a Buffer.
  return value instanceof Uint8Array ? Uint8Array.from(value) : new Uint8Array(0);
}

function pageSize(value: unknown, field: string): number {
  const n = uint(value, field, MAX_PAGE_SIZE_BYTES);
  if (n < MIN_PAGE_SIZE_BYTES || (n & (n - 1)) !== 0)
    fail('out_of_range', `${field} ${n} is not a power of two between ${MIN_PAGE_SIZE_BYTES} and ${MAX_PAGE_SIZE_BYTES}`);
  return n;
}

type Raw = Record<string, unknown>;
const obj = (v: unknown): Raw => (v && typeof v === 'object' ? (v as Raw) : {});

/** proto3's zero is absence: a balloon with nothing handed off decodes without the field, as peers that predate it send it. */
function handedOff(handedOffMib: number): { handedOffMib?: number } {
  return handedOffMib > 0 ? { handedOffMib } : {};
}

function readHello(r: Raw): Hello {
  const vmName = text(r.vmName, 'hello.vm_name', MAX_VM_NAME_CHARS);
  const problem = vmNameProblem(vmName);
  if (problem) fail('invalid_argument', problem);
  const f = obj(r.facts);
  const caps = obj(f.capabilities);
  const totalMemoryMib = mib(f.totalMemoryMib, 'hello.facts.total_memory_mib');
  if (totalMemoryMib === 0) fail('out_of_range', 'hello.facts.total_memory_mib must be above 0');
  const chunkSizeMib = uint(f.chunkSizeMib, 'hello.facts.chunk_size_mib', MAX_CHUNK_MIB);
  if (chunkSizeMib === 0) fail('out_of_range', 'hello.facts.chunk_size_mib must be above 0');
  const b = obj(r.balloon);
  const actualMib = mib(b.actualMib, 'hello.balloon.actual_mib', totalMemoryMib);
  const lockedMib = mib(b.lockedMib, 'hello.balloon.locked_mib', actualMib, 'actual_mib');
  const handedOffMib = mib(b.handedOffMib, 'hello.balloon.handed_off_mib', actualMib, 'actual_mib');
  // Pinned and handed-off parts are disjoint pieces of the balloon.
  if (lockedMib + handedOffMib > actualMib)
    fail('out_of_range', `hello.balloon.locked_mib + handed_off_mib (${lockedMib} + ${handedOffMib}) exceed actual_mib ${actualMib}`);
  return {
    vmName,
    credential: text(r.credential, 'hello.credential', MAX_CREDENTIAL_CHARS),
    agentVersion: text(r.agentVersion, 'hello.agent_version'),
    facts: {
      pid: uint(f.pid, 'hello.facts.pid', 0xffff_ffff),
      totalMemoryMib,
      pageSizeBytes: pageSize(f.pageSizeBytes, 'hello.facts.page_size_bytes'),
      chunkSizeMib,
      capabilities: { pin: caps.pin === true, pageFusion: caps.pageFusion === true, deflateOnPressure: caps.deflateOnPressure === true },
      domain: enumName(MEMORY_DOMAINS, f.domain),
      hostname: text(f.hostname, 'hello.facts.hostname'),
    },
    balloon: {
      actualMib,
      lockedMib,
      generation: uint(b.generation, 'hello.balloon.generation', MAX_HELLO_GENERATION),
      targetMib: mib(b.targetMib, 'hello.balloon.target_mib', totalMemoryMib),
      ...handedOff(handedOffMib),
    },
  };
}

/** Free memory is a part of the domain's memory: at most its total, as the .proto says. */
function partOfTotal(value: unknown, field: string, totalBytes: number): number {
  const n = uint(value, field);
  if (n > totalBytes) fail('out_of_range', `${field} is ${n}, above memory_stats.total_bytes of ${totalBytes}`);
  return n;
}

function readStats(r: Raw): MemoryStats {
  const totalBytes = uint(r.totalBytes, 'memory_stats.total_bytes');
  return {
    totalBytes,
    freeBytes: partOfTotal(r.freeBytes, 'memory_stats.free_bytes', totalBytes),
    // Not bounded by the total: see the .proto (an agent counts it as if a lowered limit were not).
    availableBytes: uint(r.availableBytes, 'memory_stats.available_bytes'),
    diskCachesBytes: uint(r.diskCachesBytes, 'memory_stats.disk_caches_bytes'),
    swapInBytes: uint(r.swapInBytes, 'memory_stats.swap_in_bytes'),
    swapOutBytes: uint(r.swapOutBytes, 'memory_stats.swap_out_bytes'),
    majorFaults: uint(r.majorFaults, 'memory_stats.major_faults'),
    minorFaults: uint(r.minorFaults, 'memory_stats.minor_faults'),
    psiSomeAvg10Percent: percent(r.psiSomeAvg10Percent, 'memory_stats.psi_some_avg10_percent'),
    psiFullAvg10Percent: percent(r.psiFullAvg10Percent, 'memory_stats.psi_full_avg10_percent'),
    agentRssBytes: uint(r.agentRssBytes, 'memory_stats.agent_rss_bytes'),
    sharedBytes: uint(r.sharedBytes, 'memory_stats.shared_bytes'),
    domain: enumName(MEMORY_DOMAINS, r.domain),
  };
}

function readBody(env: Raw, opts: DecodeOptions): Body {
  const g = opts.guestMemoryMib;
  switch (env.body) {
    case 'hello':
      return { case: 'hello', value: readHello(obj(env.hello)) };
    case 'welcome': {
      const r = obj(env.welcome);
      const p = obj(r.protection);
      return {
        case: 'welcome',
        value: {
          sessionId: text(r.sessionId, 'welcome.session_id'),
          targetMib: mib(r.targetMib, 'welcome.target_mib', g),
          generation: uint(r.generation, 'welcome.generation', MAX_GENERATION),
          statsIntervalMs: uint(r.statsIntervalMs, 'welcome.stats_interval_ms', MAX_INTERVAL_MS),
          heartbeatIntervalMs: uint(r.heartbeatIntervalMs, 'welcome.heartbeat_interval_ms', MAX_INTERVAL_MS),
          protection: { floorMib: mib(p.floorMib, 'welcome.protection.floor_mib', g), deflateOnPressure: p.deflateOnPressure === true },
          pageFusion: r.pageFusion === true,
        },
      };
    }
    case 'setBalloonTarget': {
      const r = obj(env.setBalloonTarget);
      return {
        case: 'setBalloonTarget',
        value: {
          targetMib: mib(r.targetMib, 'set_balloon_target.target_mib', g),
          generation: uint(r.generation, 'set_balloon_target.generation', MAX_GENERATION),
        },
      };
    }
    case 'balloonStatus': {
      const r = obj(env.balloonStatus);
      const actualMib = mib(r.actualMib, 'balloon_status.actual_mib', g);
      const lockedMib = mib(r.lockedMib, 'balloon_status.locked_mib', actualMib, 'actual_mib');
      const handedOffMib = mib(r.handedOffMib, 'balloon_status.handed_off_mib', actualMib, 'actual_mib');
      if (lockedMib + handedOffMib > actualMib)
        fail('out_of_range', `balloon_status.locked_mib + handed_off_mib (${lockedMib} + ${handedOffMib}) exceed actual_mib ${actualMib}`);
      return {
        case: 'balloonStatus',
        value: {
          generation: uint(r.generation, 'balloon_status.generation', MAX_GENERATION),
          targetMib: mib(r.targetMib, 'balloon_status.target_mib', g),
          actualMib,
          lockedMib,
          ...handedOff(handedOffMib),
          state: enumName(BALLOON_STATES, r.state),
          reason: enumName(SHORTFALL_REASONS, r.reason),
          lock: enumName(LOCK_STATES, r.lock),
          detail: text(r.detail, 'balloon_status.detail'),
        },
      };
    }
    case 'memoryStats':
      return { case: 'memoryStats', value: readStats(obj(env.memoryStats)) };
    case 'error': {
      const r = obj(env.error);
      return {
        case: 'error',
        value: {
          code: enumName(ERROR_CODES, r.code),
          message: text(r.message, 'error.message'),
          retryAfterMs: uint(r.retryAfterMs, 'error.retry_after_ms', MAX_INTERVAL_MS),
        },
      };
    }
    case 'goodbye': {
      const r = obj(env.goodbye);
      return { case: 'goodbye', value: { reason: enumName(GOODBYE_REASONS, r.reason), message: text(r.message, 'goodbye.message') } };
    }
    case 'sharedRegion': {
      const r = obj(env.sharedRegion);
      const pageHashes = bytesField(r.pageHashes);
      const confirmHashes = bytesField(r.confirmHashes);
      if (pageHashes.length % PAGE_HASH_BYTES !== 0)
        fail('invalid_argument', `shared_region.page_hashes is ${pageHashes.length} bytes, not a multiple of ${PAGE_HASH_BYTES}`);
      if (confirmHashes.length !== pageHashes.length) fail('invalid_argument', 'shared_region.confirm_hashes and page_hashes differ in length');
      const pages = pageHashes.length / PAGE_HASH_BYTES;
      if (pages > MAX_PAGES_PER_REGION_FRAME)
        fail('out_of_range', `shared_region carries ${pages} pages, above the limit of ${MAX_PAGES_PER_REGION_FRAME} per frame`);
      const pageSizeBytes = pageSize(r.pageSizeBytes, 'shared_region.page_size_bytes');
      const sizeBytes = uint(r.sizeBytes, 'shared_region.size_bytes');
      const firstPage = uint(r.firstPage, 'shared_region.first_page', 0xffff_ffff);
      if ((firstPage + pages) * pageSizeBytes > sizeBytes + pageSizeBytes - 1) fail('out_of_range', 'shared_region pages run past the end of the region');
      return {
        case: 'sharedRegion',
        value: {
          regionId: uint(r.regionId, 'shared_region.region_id', 0xffff_ffff),
          name: text(r.name, 'shared_region.name'),
          version: text(r.version, 'shared_region.version'),
          sizeBytes,
          pageSizeBytes,
          firstPage,
          pageHashes,
          confirmHashes,
          mergeable: r.mergeable === true,
          last: r.last === true,
        },
      };
    }
    case 'handOffBalloon': {
      const r = obj(env.handOffBalloon);
      return { case: 'handOffBalloon', value: { handedOffMib: mib(r.handedOffMib, 'hand_off_balloon.handed_off_mib', g) } };
    }
    case 'sharedRegionRemoved': {
      const r = obj(env.sharedRegionRemoved);
      return { case: 'sharedRegionRemoved', value: { regionId: uint(r.regionId, 'shared_region_removed.region_id', 0xffff_ffff) } };
    }
    default:
      return fail('malformed_frame', 'the frame has no body');
  }
}

/**
 * Decodes one frame from untrusted bytes. Throws only ProtocolError: for
 * malformed or truncated bytes, an empty body, a version other than
 * PROTOCOL_VERSION, numbers out of range and over-long or non-UTF-8 strings.
 */
export function decodeFrame(bytes: Uint8Array, opts: DecodeOptions = {}): Frame {
  const maxFrameBytes = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
  if (!(bytes instanceof Uint8Array)) fail('malformed_frame', 'a frame must be binary');
  if (bytes.length > maxFrameBytes) fail('frame_too_large', `the frame is ${bytes.length} bytes, above the limit of ${maxFrameBytes}`);
  if (bytes.length === 0) fail('malformed_frame', 'the frame is empty');
  let env: Raw;
  try {
    env = pb.Envelope.decode(bytes) as unknown as Raw;
  } catch (err) {
    return fail('malformed_frame', `the frame is not a valid Envelope: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  const protocolVersion = uint(env.protocolVersion, 'envelope.protocol_version', 0xffff_ffff);
  if (protocolVersion !== PROTOCOL_VERSION) {
    fail('unsupported_version', `protocol version ${protocolVersion} is not supported (this side speaks ${PROTOCOL_VERSION})`);
  }
  // A seq past 2^53 is no sender's next number: where numbers are tracked it
  // is a gap (fatal), not a value to refuse while the session goes on.
  if (opts.seq !== undefined && !Number.isSafeInteger(Number(env.seq ?? 0))) {
    fail('out_of_order', `frame ${String(env.seq)} arrived after frame ${opts.seq.lastSeq}; the next must be ${opts.seq.lastSeq + 1}`);
  }
  const seq = uint(env.seq, 'envelope.seq');
  if (seq === 0) fail('malformed_frame', 'envelope.seq must start at 1');
  opts.seq?.accept(seq);
  return { protocolVersion, seq, body: readBody(env, opts) };
}

function toWire(body: Body): Record<string, unknown> {
  switch (body.case) {
    case 'hello': {
      const v = body.value;
      return { hello: { ...v, facts: { ...v.facts, domain: enumNumber(MEMORY_DOMAINS, v.facts.domain) } } };
    }
    case 'balloonStatus': {
      const v = body.value;
      return {
        balloonStatus: {
          ...v,
          state: enumNumber(BALLOON_STATES, v.state),
          reason: enumNumber(SHORTFALL_REASONS, v.reason),
          lock: enumNumber(LOCK_STATES, v.lock),
        },
      };
    }
    case 'memoryStats':
      return { memoryStats: { ...body.value, domain: enumNumber(MEMORY_DOMAINS, body.value.domain) } };
    case 'error':
      return { error: { ...body.value, code: enumNumber(ERROR_CODES, body.value.code) } };
    case 'goodbye':
      return { goodbye: { ...body.value, reason: enumNumber(GOODBYE_REASONS, body.value.reason) } };
    default:
      return { [body.case]: body.value };
  }
}

/** A number field's wire type; a nested message is a table of its own. */
type NumberKind = 'uint32' | 'uint64' | 'double';
/** The number fields of a message (camelCase, as protobufjs names them), nested messages as tables. */
interface WireTable {
  readonly [field: string]: NumberKind | WireTable;
}

/**
 * The .proto's number fields, by message (codec.test.ts checks this table
 * against the .proto). protobufjs writes a uint32 modulo 2^32 and a uint64
 * through two's complement, so a value out of its type's range would reach
 * the peer as another number: the encoder refuses it instead.
 */
export const WIRE_NUMBERS: WireTable = {
  protocolVersion: 'uint32',
  seq: 'uint64',
  hello: {
    facts: { pid: 'uint32', totalMemoryMib: 'uint32', pageSizeBytes: 'uint32', chunkSizeMib: 'uint32' },
    balloon: { actualMib: 'uint32', lockedMib: 'uint32', generation: 'uint64', targetMib: 'uint32', handedOffMib: 'uint32' },
  },
  welcome: { targetMib: 'uint32', generation: 'uint64', statsIntervalMs: 'uint32', heartbeatIntervalMs: 'uint32', protection: { floorMib: 'uint32' } },
  setBalloonTarget: { targetMib: 'uint32', generation: 'uint64' },
  balloonStatus: { generation: 'uint64', targetMib: 'uint32', actualMib: 'uint32', lockedMib: 'uint32', handedOffMib: 'uint32' },
  memoryStats: {
    totalBytes: 'uint64',
    freeBytes: 'uint64',
    availableBytes: 'uint64',
    diskCachesBytes: 'uint64',
    swapInBytes: 'uint64',
    swapOutBytes: 'uint64',
    majorFaults: 'uint64',
    minorFaults: 'uint64',
    psiSomeAvg10Percent: 'double',
    psiFullAvg10Percent: 'double',
    agentRssBytes: 'uint64',
    sharedBytes: 'uint64',
  },
  error: { retryAfterMs: 'uint32' },
  sharedRegion: { regionId: 'uint32', sizeBytes: 'uint64', pageSizeBytes: 'uint32', firstPage: 'uint32' },
  sharedRegionRemoved: { regionId: 'uint32' },
  handOffBalloon: { handedOffMib: 'uint32' },
};

const MAX_UINT32 = 0xffff_ffff;
const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Refuses (out_of_range, naming the field and the value) a number its wire type cannot carry as it is. */
function checkWireNumbers(props: Raw, table: WireTable, path: string): void {
  for (const [field, kind] of Object.entries(table)) {
    const value = props[field];
    if (value === undefined || value === null) continue;
    // The envelope's own fields are named as the decoder names them (envelope.seq).
    const name = path === '' && typeof kind === 'string' ? `envelope.${snake(field)}` : `${path}${snake(field)}`;
    if (typeof kind === 'object') {
      checkWireNumbers(obj(value), kind, `${name}.`);
      continue;
    }
    if (typeof value !== 'number') fail('out_of_range', `cannot encode ${name}: ${String(value)} is not a number`);
    if (kind === 'double') {
      if (!Number.isFinite(value)) fail('out_of_range', `cannot encode ${name}: ${value} is not a finite number`);
    } else if (!Number.isSafeInteger(value) || value < 0 || (kind === 'uint32' && value > MAX_UINT32)) {
      // The .proto: integers are plain safe integers, even in uint64 fields.
      const range = kind === 'uint32' ? `0 to ${MAX_UINT32}` : `0 to ${Number.MAX_SAFE_INTEGER}`;
      fail('out_of_range', `cannot encode ${name}: ${value} is not an integer from ${range} (${kind}); it would reach the peer as another number`);
    }
  }
}

/**
 * Encodes one frame. The caller owns the sequence number (see FrameEncoder).
 * A number its field's wire type cannot carry (a uint32 above 2^32 - 1, a
 * negative or fractional integer, an integer past 2^53) is refused with a
 * ProtocolError (out_of_range) naming the field and the value, never
 * sent as another number.
 */
export function encodeFrame(seq: number, body: Body): Uint8Array {
  const props = { protocolVersion: PROTOCOL_VERSION, seq, ...toWire(body) };
  checkWireNumbers(props, WIRE_NUMBERS, '');
  return pb.Envelope.encode(props as memballoon.v1.Envelope.$Properties).finish();
}

/** Encodes frames with the sender's sequence numbers, 1, 2, 3, … */
export class FrameEncoder {
  private seq = 0;

  /** Encodes the next frame; a body refused (ProtocolError) uses up no number, so the peer sees no gap. */
  encode(body: Body): Uint8Array {
    const frame = encodeFrame(this.seq + 1, body);
    this.seq += 1;
    return frame;
  }

  /** The sequence number of the last frame encoded. */
  get lastSeq(): number {
    return this.seq;
  }
}

/**
 * Checks a peer's sequence numbers: 1, 2, 3, … with no gap (the .proto's
 * rule). A gap means a frame was lost or forged in between, and a stream
 * with a hole cannot be trusted any more than one that repeats: both are
 * `out_of_order`.
 */
export class SeqTracker {
  private last = 0;

  /** The last sequence number accepted (0 before the first frame). */
  get lastSeq(): number {
    return this.last;
  }

  /** Accepts the next sequence number (the last one + 1) or throws. */
  accept(seq: number): void {
    if (seq !== this.last + 1) {
      throw new ProtocolError('out_of_order', `frame ${seq} arrived after frame ${this.last}; the next must be ${this.last + 1}`);
    }
    this.last = seq;
  }
}

/** The body of a frame of the given case, or a ProtocolError naming what came instead. */
export function expectBody<C extends BodyCase>(frame: Frame, kind: C): BodyOf<C> {
  if (frame.body.case !== kind) {
    throw new ProtocolError('unexpected_message', `expected ${kind}, got ${frame.body.case}`);
  }
  return frame.body.value as BodyOf<C>;
}
