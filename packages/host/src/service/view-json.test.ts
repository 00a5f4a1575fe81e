// vmViewJson against the contract's oracle: JSON.stringify of the same view,
// byte for byte, over views made by build-views.ts from random records,
// pool entries, guest statuses and statistics (odd names, any number).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BALLOON_STATES, LOCK_STATES, MEMORY_DOMAINS, SHORTFALL_REASONS, type BalloonStatus, type MemoryStats } from '@memballoon/protocol';
import type { ManagedGuestView } from '../guests/views.js';
import type { PoolVmView } from '../pool/pool.js';
import type { VmRecord } from '../registry/registry.js';
import { vmView, writeStatsView, writeStatus, type GuestFactsView } from './build-views.js';
import { vmViewJson } from './view-json.js';

// Mostly what a host holds (whole MiB), sometimes anything a double can be.
const anyNumber = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 1 << 20 }) },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.maxSafeNat() },
  { weight: 2, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e21, 5e-324) },
);
// Plain names, and strings JSON must escape (quotes, backslashes, control characters, lone surrogates, non-ASCII).
const anyString = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._-]{1,40}$/),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('', '"', '\\', '\u0000', '\u001f', '\u007f', '\u2028', '\ud800', 'é', 'vm "1"\n'),
);

const recordArb: fc.Arbitrary<VmRecord> = fc.record({
  name: anyString,
  memoryMib: anyNumber,
  defaultBalloonMib: anyNumber,
  pageFusion: fc.boolean(),
  balloonPolicy: fc.constantFrom('manual' as const, 'auto' as const),
  memoryMinMib: anyNumber,
  balloonMaxMib: fc.oneof(fc.constant(0), anyNumber),
  memoryWeight: anyNumber,
  memoryBufferPercent: anyNumber,
  tokenHash: fc.option(fc.string(), { nil: null }),
  createdAtMs: anyNumber,
});

const statusArb: fc.Arbitrary<BalloonStatus> = fc.record({
  generation: fc.integer({ min: 0, max: 4 }),
  targetMib: anyNumber,
  actualMib: anyNumber,
  lockedMib: anyNumber,
  handedOffMib: fc.option(anyNumber, { nil: undefined }),
  state: fc.constantFrom(...BALLOON_STATES),
  reason: fc.constantFrom(...SHORTFALL_REASONS),
  lock: fc.constantFrom(...LOCK_STATES),
  detail: anyString,
});

const statsArb: fc.Arbitrary<MemoryStats> = fc.record({
  totalBytes: anyNumber,
  freeBytes: anyNumber,
  availableBytes: anyNumber,
  diskCachesBytes: anyNumber,
  swapInBytes: anyNumber,
  swapOutBytes: anyNumber,
  majorFaults: anyNumber,
  minorFaults: anyNumber,
  psiSomeAvg10Percent: anyNumber,
  psiFullAvg10Percent: anyNumber,
  agentRssBytes: anyNumber,
  sharedBytes: anyNumber,
  domain: fc.constantFrom(...MEMORY_DOMAINS),
});

const managedArb: fc.Arbitrary<ManagedGuestView> = fc.record(
  {
    managedBy: fc.constantFrom('startvm' as const, 'adopted' as const),
    cgroup: fc.option(anyString, { nil: null }),
    logFile: anyString,
    agentPid: anyNumber,
    command: fc.array(anyString, { maxLength: 4 }),
    user: anyString,
  },
  { requiredKeys: ['managedBy', 'cgroup'] },
);

const runningArb = fc.option(
  fc.record({
    targetMib: anyNumber,
    actualMib: anyNumber,
    heldMib: anyNumber,
    generation: fc.integer({ min: 0, max: 4 }),
    pid: anyNumber,
    lockedMib: anyNumber,
    balloonActualMib: fc.option(anyNumber, { nil: undefined }),
    handedOffMib: fc.option(anyNumber, { nil: undefined }),
    startedAtMs: anyNumber,
    status: fc.option(statusArb, { nil: undefined }),
    stats: fc.option(fc.tuple(statsArb, anyNumber), { nil: undefined }),
  }),
  { nil: undefined },
);

const extrasArb = fc.option(
  fc.record({
    starting: fc.option(fc.boolean(), { nil: undefined }),
    sharableMib: fc.option(anyNumber, { nil: undefined }),
    managed: fc.option(managedArb, { nil: undefined }),
  }),
  { nil: undefined },
);

describe('vmViewJson', () => {
  it('writes the bytes JSON.stringify writes, for any view build-views makes', () => {
    fc.assert(
      fc.property(recordArb, runningArb, extrasArb, (record, r, extras) => {
        const running =
          r === undefined
            ? undefined
            : {
                pool: { targetMib: r.targetMib, actualMib: r.actualMib, heldMib: r.heldMib } as PoolVmView,
                guest: {
                  generation: r.generation,
                  pid: r.pid,
                  lockedMib: r.lockedMib,
                  balloonActualMib: r.balloonActualMib,
                  handedOffMib: r.handedOffMib,
                  startedAtMs: r.startedAtMs,
                  status: r.status && writeStatus(undefined, r.status),
                  stats: r.stats && writeStatsView(undefined, r.stats[0], record.memoryMib, r.stats[1]),
                } satisfies GuestFactsView,
              };
        const view = vmView(record, running, extras);
        expect(vmViewJson(view)).toBe(JSON.stringify(view));
      }),
      { numRuns: 3000 },
    );
  });

  it('writes every field of a running managed view, and a starting one', () => {
    const record: VmRecord = {
      name: 'vm-1',
      memoryMib: 512,
      defaultBalloonMib: 0,
      pageFusion: true,
      balloonPolicy: 'auto',
      memoryMinMib: 128,
      balloonMaxMib: 0,
      memoryWeight: 1,
      memoryBufferPercent: 10,
      tokenHash: null,
      createdAtMs: 1,
    };
    const stats: MemoryStats = {
      totalBytes: 512 << 20,
      freeBytes: 100 << 20,
      availableBytes: 200 << 20,
      diskCachesBytes: 50 << 20,
      swapInBytes: 0,
      swapOutBytes: 0,
      majorFaults: 3,
      minorFaults: 4,
      psiSomeAvg10Percent: 0.5,
      psiFullAvg10Percent: 0,
      agentRssBytes: 40 << 20,
      sharedBytes: 8 << 20,
      domain: 'cgroup',
    };
    const view = vmView(
      record,
      {
        pool: { targetMib: 64, actualMib: 32, heldMib: 480 } as PoolVmView,
        guest: { generation: 2, pid: 42, lockedMib: 32, startedAtMs: 1000, status: undefined, stats: writeStatsView(undefined, stats, 512, 5) },
      },
      { sharableMib: 3, managed: { managedBy: 'startvm', cgroup: '/sys/fs/cgroup/memory/mb/vm-1', command: ['sleep', '1'] } },
    );
    const text = vmViewJson(view);
    expect(text).toBe(JSON.stringify(view));
    expect(Object.keys(JSON.parse(text))).toEqual([
      'name',
      'state',
      'memoryMib',
      'defaultBalloonMib',
      'pageFusion',
      'balloonPolicy',
      'memoryMinMib',
      'balloonMaxMib',
      'memoryWeight',
      'memoryBufferPercent',
      'balloon',
      'pid',
      'heldMib',
      'stats',
      'sharableMib',
      'sharedMib',
      'startedAtMs',
      'managed',
    ]);
    const starting = vmView(record, undefined, { starting: true });
    expect(vmViewJson(starting)).toBe(JSON.stringify(starting));
    expect(JSON.parse(vmViewJson(starting)).starting).toBe(true);
  });
});
