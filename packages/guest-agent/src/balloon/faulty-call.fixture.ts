// Tests only: fault-in calls that fail on purpose, in the ways an async libc
// call through koffi can fail, for the engine's failure tests:
//   'error'  — koffi reports the call failed (`err` in the callback) after it
//              faulted the whole chunk in (the engine must hand it back);
//   'throw'  — the call cannot even be queued (koffi throws at once);
//   'silent' — the call never returns (stuck in the kernel; only the watchdog notices);
//   'errno'  — libc answers -1 with ENOMEM (not a failure of the call: the
//              words fault the pages in, as touching would have);
//   'einval' — libc answers -1 with EINVAL, as a kernel before 5.14 does for
//              MADV_POPULATE_WRITE (the engine then commits on the main thread).
// `faults` (Int32Array on a SharedArrayBuffer, [count]) says how many calls
// fail; the others are the real ones (faultInAsync).
import { faultInAsync } from '../native/libc.js';
import type { FaultInCall } from './fault-in-pool.js';

/** Ways a fault-in call fails in this fixture. */
export type CallFault = 'error' | 'throw' | 'silent' | 'errno' | 'einval';

/** A fault-in call that fails the first `faults[0]` times, as `fault` says. */
export function faultyCall(fault: CallFault, faults: Int32Array): FaultInCall {
  return (mem, how, done) => {
    if (Atomics.sub(faults, 0, 1) <= 0) {
      faultInAsync(mem, how, done);
      return;
    }
    if (fault === 'throw') throw new Error('fixture: the call could not be queued');
    if (fault === 'silent') return;
    if (fault === 'einval') {
      setImmediate(() => done(null, { ok: false, failure: 'failed', errno: 22, message: 'madvise failed with EINVAL' }));
      return;
    }
    if (fault === 'errno') {
      setImmediate(() => done(null, { ok: false, failure: 'not_permitted', errno: 12, message: 'madvise failed with ENOMEM' }));
      return;
    }
    // What a call that failed part-way leaves behind: pages faulted in.
    mem.fill(7);
    setImmediate(() => done(new Error('fixture: the call failed'), { ok: false, failure: 'failed', errno: 0, message: 'fixture: the call failed' }));
  };
}
