import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import {
  BALLOON_STATES,
  bodies,
  decodeFrame,
  encodeFrame,
  ERROR_CODES,
  expectBody,
  FrameEncoder,
  GOODBYE_REASONS,
  LOCK_STATES,
  MAX_FRAME_BYTES,
  MAX_GENERATION,
  MAX_HELLO_GENERATION,
  MAX_MEMORY_MIB,
  MAX_PAGES_PER_REGION_FRAME,
  MAX_TEXT_CHARS,
  MAX_VM_NAME_CHARS,
  MEMORY_DOMAINS,
  nextGeneration,
  ProtocolError,
  PROTOCOL_VERSION,
  SeqTracker,
  SHORTFALL_REASONS,
  vmNameProblem,
  WIRE_NUMBERS,
  type Body,
  type ErrorCode,
  type Hello,
} from './index.js';
import { memballoon } from './generated/memballoon.js';

const pb = memballoon.v1;

const hello: Hello = {
  vmName: 'web server-1',
  credential: 'tok_abc',
  agentVersion: '0.1.0',
  facts: {
    pid: 4242,
    totalMemoryMib: 1024,
    pageSizeBytes: 4096,
    chunkSizeMib: 1,
    capabilities: { pin: true, pageFusion: true, deflateOnPressure: true },
    domain: 'process',
    hostname: 'guest-a',
  },
  balloon: { actualMib: 128, lockedMib: 100, generation: 9, targetMib: 256 },
};

const hashes = new Uint8Array(16).map((_, i) => i + 1);

/** One of every body, with non-default values in every field. */
const everyBody: Body[] = [
  bodies.hello(hello),
  bodies.welcome({
    sessionId: 's-1',
    targetMib: 64,
    generation: 3,
    statsIntervalMs: 1000,
    heartbeatIntervalMs: 2000,
    protection: { floorMib: 64, deflateOnPressure: true },
    pageFusion: true,
  }),
  bodies.setBalloonTarget({ targetMib: 300, generation: 2 ** 40 }),
  bodies.balloonStatus({
    generation: 5,
    targetMib: 300,
    actualMib: 200,
    lockedMib: 150,
    handedOffMib: 50,
    state: 'short',
    reason: 'guest_floor',
    lock: 'not_permitted',
    detail: 'floor of 64 MiB',
  }),
  bodies.memoryStats({
    totalBytes: 2 ** 40,
    freeBytes: 2 ** 33 + 1,
    availableBytes: 12345678901,
    diskCachesBytes: 4096,
    swapInBytes: 1,
    swapOutBytes: 2,
    majorFaults: 3,
    minorFaults: 4,
    psiSomeAvg10Percent: 12.5,
    psiFullAvg10Percent: 0.25,
    agentRssBytes: 77 * 1024 * 1024,
    sharedBytes: 8192,
    domain: 'cgroup',
  }),
  bodies.error('pool_exhausted', 'no room', 5000),
  bodies.goodbye('shutdown', 'bye'),
  bodies.sharedRegion({
    regionId: 7,
    name: 'model.bin',
    version: 'v2',
    sizeBytes: 8192,
    pageSizeBytes: 4096,
    firstPage: 0,
    pageHashes: hashes,
    confirmHashes: hashes.map((b) => 255 - b),
    mergeable: true,
    last: true,
  }),
  bodies.sharedRegionRemoved({ regionId: 7 }),
  bodies.handOffBalloon({ handedOffMib: 96 }),
];

function codeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return (err as ProtocolError).code;
  }
  throw new Error('expected a ProtocolError, nothing was thrown');
}

/** Encodes a raw Envelope, bypassing the facade's types (for hostile input). */
function rawFrame(props: Record<string, unknown>): Uint8Array {
  return pb.Envelope.encode({ protocolVersion: PROTOCOL_VERSION, seq: 1, ...props } as never).finish();
}

describe('round trips', () => {
  it.each(everyBody.map((b) => [b.case, b] as const))('%s survives encode and decode unchanged', (_case, body) => {
    const frame = decodeFrame(encodeFrame(17, body));
    expect(frame).toEqual({ protocolVersion: PROTOCOL_VERSION, seq: 17, body });
  });

  it('covers every case of the oneof', () => {
    const proto = readFileSync(new URL('../proto/memballoon/v1/memballoon.proto', import.meta.url), 'utf8');
    const block = /oneof body \{([^}]*)\}/.exec(proto)?.[1] ?? '';
    const fromProto = [...block.matchAll(/^\s*\w+ (\w+) = \d+;/gm)].map((m) => m[1]!.replace(/_(\w)/g, (_, c: string) => c.toUpperCase()));
    expect(fromProto.length).toBeGreaterThan(0);
    expect(everyBody.map((b) => b.case).sort()).toEqual(fromProto.sort());
  });

  it.each(ERROR_CODES.map((c) => [c]))('error code %s crosses the wire', (code) => {
    const frame = decodeFrame(encodeFrame(1, bodies.error(code, `it was ${code}`)));
    expect(expectBody(frame, 'error')).toEqual({ code, message: `it was ${code}`, retryAfterMs: 0 });
  });

  it.each([
    ['BalloonState', BALLOON_STATES, pb.BalloonState, 'BALLOON_STATE_'],
    ['ShortfallReason', SHORTFALL_REASONS, pb.ShortfallReason, 'SHORTFALL_REASON_'],
    ['LockState', LOCK_STATES, pb.LockState, 'LOCK_STATE_'],
    ['MemoryDomain', MEMORY_DOMAINS, pb.MemoryDomain, 'MEMORY_DOMAIN_'],
    ['GoodbyeReason', GOODBYE_REASONS, pb.GoodbyeReason, 'GOODBYE_REASON_'],
    ['ErrorCode', ERROR_CODES, pb.ErrorCode, 'ERROR_CODE_'],
  ] as const)('the facade names of %s match the .proto in wire order', (_name, names, generated, prefix) => {
    const fromProto = Object.entries(generated as unknown as Record<string, number>)
      .filter(([k]) => k.startsWith(prefix))
      .sort((a, b) => a[1] - b[1])
      .map(([k]) => k.slice(prefix.length).toLowerCase());
    // The one facade name that differs: a shortfall reason of zero is 'none' (no shortfall).
    expect([...names]).toEqual(_name === 'ShortfallReason' ? fromProto.map((n) => (n === 'unspecified' ? 'none' : n)) : fromProto);
  });

  it('every enum value of every body round-trips', () => {
    for (const state of BALLOON_STATES) {
      for (const reason of SHORTFALL_REASONS) {
        const body = bodies.balloonStatus({ generation: 1, targetMib: 2, actualMib: 1, lockedMib: 0, state, reason, lock: 'locked' });
        expect(decodeFrame(encodeFrame(1, body)).body).toEqual(body);
      }
    }
    for (const lock of LOCK_STATES) {
      const body = bodies.balloonStatus({ generation: 1, targetMib: 2, actualMib: 1, lockedMib: 0, state: 'steady', lock });
      expect(decodeFrame(encodeFrame(1, body)).body).toEqual(body);
    }
    for (const reason of GOODBYE_REASONS) expect(decodeFrame(encodeFrame(1, bodies.goodbye(reason))).body).toEqual(bodies.goodbye(reason));
    for (const domain of MEMORY_DOMAINS) expect(decodeFrame(encodeFrame(1, bodies.memoryStats({ domain }))).body).toEqual(bodies.memoryStats({ domain }));
  });

  it('FrameEncoder numbers frames 1, 2, 3 and SeqTracker refuses repeats and reordering', () => {
    const enc = new FrameEncoder();
    const seqs = [enc.encode(bodies.goodbye('shutdown')), enc.encode(bodies.goodbye('shutdown'))].map((b) => decodeFrame(b).seq);
    expect(seqs).toEqual([1, 2]);
    expect(enc.lastSeq).toBe(2);
    const t = new SeqTracker();
    t.accept(1);
    t.accept(2);
    // A gap is refused like a repeat: the .proto says +1 per frame.
    expect(codeOf(() => t.accept(5))).toBe('out_of_order');
    t.accept(3);
    expect(codeOf(() => t.accept(3))).toBe('out_of_order');
    expect(codeOf(() => t.accept(2))).toBe('out_of_order');
    t.accept(4);
  });

  it('counts a frame whose body is refused against the sequence, and checks the sequence before the body', () => {
    const seq = new SeqTracker();
    decodeFrame(encodeFrame(1, bodies.goodbye('shutdown')), { seq });
    const tooBig = encodeFrame(2, bodies.setBalloonTarget({ targetMib: 600, generation: 1 }));
    expect(codeOf(() => decodeFrame(tooBig, { seq, guestMemoryMib: 512 }))).toBe('out_of_range');
    expect(decodeFrame(encodeFrame(3, bodies.goodbye('shutdown')), { seq }).seq).toBe(3);
    // A repeated number is out_of_order even when its body is bad too.
    expect(codeOf(() => decodeFrame(encodeFrame(3, bodies.setBalloonTarget({ targetMib: 600, generation: 1 })), { seq, guestMemoryMib: 512 }))).toBe(
      'out_of_order',
    );
  });

  it('expectBody names what came instead', () => {
    const frame = decodeFrame(encodeFrame(1, bodies.goodbye('shutdown')));
    expect(codeOf(() => expectBody(frame, 'hello'))).toBe('unexpected_message');
  });
});

describe('untrusted bytes', () => {
  it('refuses an empty buffer', () => {
    expect(codeOf(() => decodeFrame(new Uint8Array(0)))).toBe('malformed_frame');
  });

  it('refuses garbage and truncated frames', () => {
    expect(codeOf(() => decodeFrame(new Uint8Array([0xff, 0xff, 0xff])))).toBe('malformed_frame');
    const good = encodeFrame(1, bodies.hello(hello));
    for (const cut of [1, 5, good.length - 1]) {
      expect(codeOf(() => decodeFrame(good.subarray(0, cut)))).toMatch(/malformed_frame|unsupported_version/);
    }
  });

  it('refuses a frame without a body', () => {
    expect(codeOf(() => decodeFrame(rawFrame({})))).toBe('malformed_frame');
  });

  it('refuses other protocol versions, naming both', () => {
    const frame = rawFrame({ protocolVersion: 2, goodbye: {} });
    expect(() => decodeFrame(frame)).toThrow(/version 2 is not supported \(this side speaks 1\)/);
    expect(codeOf(() => decodeFrame(rawFrame({ protocolVersion: 0, goodbye: {} })))).toBe('unsupported_version');
  });

  it('refuses seq 0 and seq beyond 2^53', () => {
    expect(codeOf(() => decodeFrame(rawFrame({ seq: 0, goodbye: {} })))).toBe('malformed_frame');
    // uint64 max as a varint: ten bytes.
    const bytes = new Uint8Array([0x08, 0x01, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x82, 0x01, 0x00]);
    expect(codeOf(() => decodeFrame(bytes))).toBe('out_of_range');
  });

  it('refuses frames above the size limit before decoding them', () => {
    expect(codeOf(() => decodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1)))).toBe('frame_too_large');
    expect(codeOf(() => decodeFrame(encodeFrame(1, bodies.hello(hello)), { maxFrameBytes: 16 }))).toBe('frame_too_large');
  });

  it('refuses negative and absurd sizes', () => {
    // A negative int32 written into a uint32 field arrives as a huge number.
    expect(codeOf(() => decodeFrame(rawFrame({ setBalloonTarget: { targetMib: -1 >>> 0, generation: 1 } })))).toBe('out_of_range');
    expect(codeOf(() => decodeFrame(rawFrame({ setBalloonTarget: { targetMib: MAX_MEMORY_MIB + 1, generation: 1 } })))).toBe('out_of_range');
    expect(codeOf(() => decodeFrame(rawFrame({ memoryStats: { totalBytes: 2 ** 60 } })))).toBe('out_of_range');
    expect(codeOf(() => decodeFrame(rawFrame({ memoryStats: { psiSomeAvg10Percent: 101 } })))).toBe('out_of_range');
    expect(codeOf(() => decodeFrame(rawFrame({ memoryStats: { psiSomeAvg10Percent: Number.NaN } })))).toBe('out_of_range');
  });

  it('bounds every generation: MAX_GENERATION on the wire, MAX_HELLO_GENERATION in a Hello, so the next one always decodes', () => {
    const resumed = (generation: number) => encodeFrame(1, bodies.hello({ ...hello, balloon: { ...hello.balloon, generation } }));
    // The Hello that locked a VM out (issue 12.6) is refused at the edge.
    expect(codeOf(() => decodeFrame(resumed(Number.MAX_SAFE_INTEGER)))).toBe('out_of_range');
    expect(codeOf(() => decodeFrame(resumed(MAX_HELLO_GENERATION + 1)))).toBe('out_of_range');
    const top = decodeFrame(resumed(MAX_HELLO_GENERATION)).body as { value: Hello };
    // What the host answers a Hello at the top still decodes on the agent's side.
    const welcome = encodeFrame(
      1,
      bodies.welcome({
        sessionId: 's',
        targetMib: 0,
        generation: nextGeneration(top.value.balloon.generation),
        statsIntervalMs: 1000,
        heartbeatIntervalMs: 1000,
        protection: { floorMib: 0, deflateOnPressure: true },
        pageFusion: false,
      }),
    );
    expect(decodeFrame(welcome).body.case).toBe('welcome');
    for (const body of [
      { setBalloonTarget: { targetMib: 1, generation: MAX_GENERATION + 1 } },
      { balloonStatus: { generation: MAX_GENERATION + 1 } },
      { welcome: { generation: MAX_GENERATION + 1 } },
    ]) {
      expect(codeOf(() => decodeFrame(rawFrame(body)))).toBe('out_of_range');
    }
    expect(decodeFrame(rawFrame({ setBalloonTarget: { targetMib: 1, generation: MAX_GENERATION } })).body.case).toBe('setBalloonTarget');
    expect(nextGeneration()).toBe(1);
    expect(nextGeneration(3, 9, 4)).toBe(10);
    expect(codeOf(() => nextGeneration(MAX_GENERATION))).toBe('out_of_range');
  });

  it('refuses a target above the guest memory when the receiver knows it', () => {
    const frame = encodeFrame(1, bodies.setBalloonTarget({ targetMib: 600, generation: 1 }));
    expect(decodeFrame(frame, { guestMemoryMib: 1024 }).body.case).toBe('setBalloonTarget');
    expect(() => decodeFrame(frame, { guestMemoryMib: 512 })).toThrow(/above the guest's memory of 512 MiB/);
  });

  it('refuses a Hello whose balloon does not fit its memory', () => {
    const tooBig = { ...hello, balloon: { ...hello.balloon, actualMib: 2048 } };
    expect(codeOf(() => decodeFrame(encodeFrame(1, bodies.hello(tooBig))))).toBe('out_of_range');
    const lockedAboveActual = { ...hello, balloon: { ...hello.balloon, lockedMib: 129 } };
    expect(codeOf(() => decodeFrame(encodeFrame(1, bodies.hello(lockedAboveActual))))).toBe('out_of_range');
    const noMemory = { ...hello, facts: { ...hello.facts, totalMemoryMib: 0 } };
    expect(codeOf(() => decodeFrame(encodeFrame(1, bodies.hello(noMemory))))).toBe('out_of_range');
    const oddPage = { ...hello, facts: { ...hello.facts, pageSizeBytes: 5000 } };
    expect(codeOf(() => decodeFrame(encodeFrame(1, bodies.hello(oddPage))))).toBe('out_of_range');
  });

  it('refuses a balloon whose pinned and handed-off parts exceed it, and a hand-off above the guest memory', () => {
    const handedAboveActual = { ...hello, balloon: { ...hello.balloon, lockedMib: 100, handedOffMib: 29 } };
    expect(codeOf(() => decodeFrame(encodeFrame(1, bodies.hello(handedAboveActual))))).toMatch('out_of_range');
    const fits = { ...hello, balloon: { ...hello.balloon, lockedMib: 100, handedOffMib: 28 } };
    expect(decodeFrame(encodeFrame(1, bodies.hello(fits))).body).toEqual(bodies.hello(fits));
    const status = bodies.balloonStatus({ generation: 1, targetMib: 64, actualMib: 64, lockedMib: 40, handedOffMib: 25, state: 'steady' });
    expect(codeOf(() => decodeFrame(encodeFrame(1, status)))).toBe('out_of_range');
    const handOff = encodeFrame(1, bodies.handOffBalloon({ handedOffMib: 600 }));
    expect(decodeFrame(handOff, { guestMemoryMib: 1024 }).body).toEqual(bodies.handOffBalloon({ handedOffMib: 600 }));
    expect(() => decodeFrame(handOff, { guestMemoryMib: 512 })).toThrow(/above the guest's memory of 512 MiB/);
  });

  it('refuses over-long strings and bad VM names', () => {
    const longName = { ...hello, vmName: 'x'.repeat(MAX_VM_NAME_CHARS + 1) };
    expect(codeOf(() => decodeFrame(encodeFrame(1, bodies.hello(longName))))).toBe('out_of_range');
    const longDetail = bodies.goodbye('shutdown', 'y'.repeat(MAX_TEXT_CHARS + 1));
    expect(codeOf(() => decodeFrame(encodeFrame(1, longDetail)))).toBe('out_of_range');
    for (const vmName of ['', ' lead', 'trail ', 'a/b', 'new\nline', 'semi;colon']) {
      expect(codeOf(() => decodeFrame(encodeFrame(1, bodies.hello({ ...hello, vmName }))))).toMatch(/invalid_argument|out_of_range/);
    }
    expect(vmNameProblem('vm 1.prod_A-b')).toBeNull();
  });

  it('accepts only VM names that a URL path keeps as they are (no dot-only names, no /, %, ?, #, \\)', () => {
    for (const name of ['.', '..', '...', 'a/b', 'a%2e', '%2e%2e', 'a?b', 'a#b', 'a\\b', '.\u0000']) {
      expect(vmNameProblem(name), name).not.toBeNull();
    }
    expect(vmNameProblem('..')).toMatch(/only dots, which a URL path would change/);
    for (const name of ['.hidden', 'a..b', 'v.1', '_', '-', 'Grüße 2', '名前']) expect(vmNameProblem(name), name).toBeNull();
    // Property: every name the grammar accepts comes back unchanged from a
    // URL path (the admin API's /api/v1/vms/NAME, as balloonctl builds it).
    const base = 'http://h.invalid/api/v1/vms/';
    const char = fc.constantFrom(...'aZ09._- ..-.é名'.split(''));
    fc.assert(
      fc.property(fc.array(char, { minLength: 1, maxLength: 12 }), fc.string({ maxLength: 8 }), (chars, any) => {
        for (const name of [chars.join(''), any]) {
          if (vmNameProblem(name) !== null) continue;
          const url = new URL(`${base}${encodeURIComponent(name)}/balloon`);
          const segs = url.pathname.split('/');
          expect(decodeURIComponent(segs[4]!)).toBe(name);
          expect(segs).toHaveLength(6);
        }
      }),
    );
  });

  it('refuses non-UTF-8 strings', () => {
    // Envelope{version 1, seq 1, goodbye{message: 0xC3 0x28}} (an invalid 2-byte sequence).
    const bytes = new Uint8Array([0x08, 0x01, 0x10, 0x01, 0x82, 0x01, 0x04, 0x12, 0x02, 0xc3, 0x28]);
    expect(codeOf(() => decodeFrame(bytes))).toBe('malformed_frame');
  });

  it("reads an enum value it does not know (a newer peer's) as UNSPECIFIED, as the .proto says, keeping the rest of the frame", () => {
    const goodbye = decodeFrame(rawFrame({ goodbye: { reason: 99, message: 'a newer reason' } }));
    expect(goodbye.body).toEqual({ case: 'goodbye', value: { reason: 'unspecified', message: 'a newer reason' } });
    const status = decodeFrame(rawFrame({ balloonStatus: { generation: 1, targetMib: 8, actualMib: 8, state: 99, reason: 77, lock: -5 } }));
    expect(status.body).toMatchObject({
      case: 'balloonStatus',
      value: { state: 'unspecified', reason: SHORTFALL_REASONS[0], lock: 'unspecified', actualMib: 8 },
    });
    expect(decodeFrame(rawFrame({ error: { code: 1000, message: 'm' } })).body).toMatchObject({ value: { code: 'unspecified', message: 'm' } });
    expect(decodeFrame(rawFrame({ memoryStats: { domain: 42, totalBytes: 1 } })).body).toMatchObject({ value: { domain: 'unspecified', totalBytes: 1 } });
  });

  it('the .proto header states the rule for unknown enum values', () => {
    const proto = readFileSync(new URL('../proto/memballoon/v1/memballoon.proto', import.meta.url), 'utf8');
    expect(proto).toMatch(/value the receiver does not know[\s\S]*UNSPECIFIED/);
  });

  it('refuses inconsistent page hashes', () => {
    const base = { regionId: 1, sizeBytes: 8192, pageSizeBytes: 4096, firstPage: 0 };
    expect(codeOf(() => decodeFrame(rawFrame({ sharedRegion: { ...base, pageHashes: new Uint8Array(7), confirmHashes: new Uint8Array(7) } })))).toBe(
      'invalid_argument',
    );
    expect(codeOf(() => decodeFrame(rawFrame({ sharedRegion: { ...base, pageHashes: new Uint8Array(16), confirmHashes: new Uint8Array(8) } })))).toBe(
      'invalid_argument',
    );
    expect(codeOf(() => decodeFrame(rawFrame({ sharedRegion: { ...base, pageHashes: new Uint8Array(24), confirmHashes: new Uint8Array(24) } })))).toBe(
      'out_of_range',
    );
    const many = (MAX_PAGES_PER_REGION_FRAME + 1) * 8;
    const huge = { ...base, sizeBytes: 2 ** 40, pageHashes: new Uint8Array(many), confirmHashes: new Uint8Array(many) };
    expect(codeOf(() => decodeFrame(rawFrame({ sharedRegion: huge })))).toBe('out_of_range');
  });

  it('throws only ProtocolError on random bytes (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 512 }), (bytes) => {
        try {
          decodeFrame(bytes);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('throws only ProtocolError on mutated valid frames (fuzz)', () => {
    const valid = everyBody.map((b) => encodeFrame(3, b));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: valid.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.nat(),
        (which, flips, cut) => {
          const bytes = Uint8Array.from(valid[which]!);
          for (const [at, value] of flips) bytes[at % bytes.length] = value;
          const input = bytes.subarray(0, 1 + (cut % bytes.length));
          try {
            const frame = decodeFrame(input);
            // Whatever decodes must re-encode: the facade handed out valid values.
            decodeFrame(encodeFrame(frame.seq, frame.body));
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe('the encoder never sends a number its wire type would change', () => {
  const statusOf = (over: Record<string, number>) =>
    bodies.balloonStatus({ generation: 1, targetMib: 1, actualMib: 1, lockedMib: 0, state: 'steady', ...over } as never);
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['a uint32 at 2^32', () => encodeFrame(1, statusOf({ targetMib: 2 ** 32 })), /balloon_status\.target_mib: 4294967296 .*uint32/],
    [
      'a uint32 at 2^32 + 5 (sent as 5)',
      () => encodeFrame(1, bodies.handOffBalloon({ handedOffMib: 2 ** 32 + 5 })),
      /hand_off_balloon\.handed_off_mib: 4294967301/,
    ],
    ['a negative uint32', () => encodeFrame(1, bodies.error('internal', '', -1)), /error\.retry_after_ms: -1/],
    ['a fractional uint32', () => encodeFrame(1, bodies.sharedRegionRemoved({ regionId: 1.5 })), /shared_region_removed\.region_id: 1\.5/],
    ['a nested uint32', () => encodeFrame(1, bodies.hello({ ...hello, facts: { ...hello.facts, pid: 2 ** 32 } })), /hello\.facts\.pid: 4294967296/],
    ['a negative uint64', () => encodeFrame(1, bodies.memoryStats({ freeBytes: -1 })), /memory_stats\.free_bytes: -1/],
    [
      'a uint64 past 2^53',
      () => encodeFrame(1, bodies.memoryStats({ totalBytes: 2 ** 60 })),
      /memory_stats\.total_bytes: 1152921504606847000 is not an integer from 0 to 9007199254740991/,
    ],
    ['a NaN double', () => encodeFrame(1, bodies.memoryStats({ psiSomeAvg10Percent: Number.NaN })), /memory_stats\.psi_some_avg10_percent: NaN/],
    ['a negative seq', () => encodeFrame(-1, bodies.goodbye('shutdown')), /envelope\.seq: -1/],
  ];
  it.each(cases)('refuses %s with a ProtocolError naming the field and the value', (_what, fn, message) => {
    expect(codeOf(fn)).toBe('out_of_range');
    expect(fn).toThrow(message);
  });

  it('a refused body uses up no sequence number: the next frame follows the last one sent', () => {
    const encoder = new FrameEncoder();
    encoder.encode(bodies.memoryStats({}));
    expect(codeOf(() => encoder.encode(bodies.handOffBalloon({ handedOffMib: 2 ** 32 })))).toBe('out_of_range');
    expect(encoder.lastSeq).toBe(1);
    expect(decodeFrame(encoder.encode(bodies.memoryStats({}))).seq).toBe(2);
  });

  it('still encodes the largest uint32 and the largest safe uint64, and the decoder reads them back as sent', () => {
    const frame = decodeFrame(encodeFrame(1, bodies.sharedRegionRemoved({ regionId: 2 ** 32 - 1 })));
    expect(frame.body).toEqual({ case: 'sharedRegionRemoved', value: { regionId: 2 ** 32 - 1 } });
    const stats = decodeFrame(encodeFrame(Number.MAX_SAFE_INTEGER, bodies.memoryStats({ totalBytes: Number.MAX_SAFE_INTEGER })));
    expect(stats.seq).toBe(Number.MAX_SAFE_INTEGER);
    expect(stats.body.case === 'memoryStats' && stats.body.value.totalBytes).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('WIRE_NUMBERS names every number field of the .proto with its type, and nothing else', async () => {
    const protobuf = (await import('protobufjs')).default;
    const root = protobuf.loadSync(new URL('../proto/memballoon/v1/memballoon.proto', import.meta.url).pathname);
    const fromProto: string[] = [];
    const walk = (type: InstanceType<typeof protobuf.Type>, path: string) => {
      for (const field of type.fieldsArray) {
        field.resolve();
        const name = `${path}${field.name}`;
        if (field.resolvedType instanceof protobuf.Type) walk(field.resolvedType, `${name}.`);
        else if (['uint32', 'uint64', 'double', 'int32', 'int64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'float'].includes(field.type))
          fromProto.push(`${name}:${field.type}`);
      }
    };
    walk(root.lookupType('memballoon.v1.Envelope'), '');
    const fromTable: string[] = [];
    const walkTable = (table: Record<string, unknown>, path: string) => {
      for (const [field, kind] of Object.entries(table)) {
        if (typeof kind === 'object') walkTable(kind as Record<string, unknown>, `${path}${field}.`);
        else fromTable.push(`${path}${field}:${String(kind)}`);
      }
    };
    walkTable(WIRE_NUMBERS as Record<string, unknown>, '');
    expect(fromTable.sort()).toEqual(fromProto.sort());
  });
});
