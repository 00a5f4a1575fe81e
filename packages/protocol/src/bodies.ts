// Constructors for each body: they fill defaults so that callers name only
// what they mean, and they tag the case.
import type {
  BalloonStatus,
  Body,
  ErrorBody,
  Goodbye,
  HandOffBalloon,
  Hello,
  MemoryStats,
  SetBalloonTarget,
  SharedRegion,
  SharedRegionRemoved,
  Welcome,
} from './types.js';

/** Builds a Hello body. */
export function hello(value: Hello): Body {
  return { case: 'hello', value };
}

/** Builds a Welcome body. */
export function welcome(value: Welcome): Body {
  return { case: 'welcome', value };
}

/** Builds a SetBalloonTarget body. */
export function setBalloonTarget(value: SetBalloonTarget): Body {
  return { case: 'setBalloonTarget', value };
}

/** Builds a BalloonStatus body; `reason`, `lock` and `detail` default to none. */
export function balloonStatus(value: Omit<BalloonStatus, 'reason' | 'lock' | 'detail'> & Partial<Pick<BalloonStatus, 'reason' | 'lock' | 'detail'>>): Body {
  return { case: 'balloonStatus', value: { reason: 'none', lock: 'unspecified', detail: '', ...value } };
}

/** Builds a MemoryStats body; missing counters are 0. */
export function memoryStats(value: Partial<MemoryStats>): Body {
  return {
    case: 'memoryStats',
    value: {
      totalBytes: 0,
      freeBytes: 0,
      availableBytes: 0,
      diskCachesBytes: 0,
      swapInBytes: 0,
      swapOutBytes: 0,
      majorFaults: 0,
      minorFaults: 0,
      psiSomeAvg10Percent: 0,
      psiFullAvg10Percent: 0,
      agentRssBytes: 0,
      sharedBytes: 0,
      domain: 'unspecified',
      ...value,
    },
  };
}

/** Builds an Error body. */
export function error(code: ErrorBody['code'], message: string, retryAfterMs = 0): Body {
  return { case: 'error', value: { code, message, retryAfterMs } };
}

/** Builds a Goodbye body. */
export function goodbye(reason: Goodbye['reason'], message = ''): Body {
  return { case: 'goodbye', value: { reason, message } };
}

/** Builds a SharedRegion body. */
export function sharedRegion(value: SharedRegion): Body {
  return { case: 'sharedRegion', value };
}

/** Builds a SharedRegionRemoved body. */
export function sharedRegionRemoved(value: SharedRegionRemoved): Body {
  return { case: 'sharedRegionRemoved', value };
}

/** Builds a HandOffBalloon body. */
export function handOffBalloon(value: HandOffBalloon): Body {
  return { case: 'handOffBalloon', value };
}
