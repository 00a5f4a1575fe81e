// The raw koffi binding of libc's memory calls, in plain JavaScript (it was
// shared with worker threads that loaded without tsx; the built package still
// ships it as is). TypeScript code uses the typed door in ./libc.ts, never
// this file.
import { createRequire } from 'node:module';

/**
 * Binds mlock, mlock2, munlock, madvise, mallopt, sysconf and errno once.
 * Each function also has `.async(...args, (err, result) => …)`, which runs
 * it on libuv's thread pool. Returns { fns } or { reason } when koffi or libc cannot be loaded.
 * mlock2 is null where glibc lacks it (before 2.27).
 */
export function bindLibc() {
  if (process.platform !== 'linux') return { fns: null, reason: `native memory calls are not supported on ${process.platform}` };
  try {
    // koffi is CommonJS with a native binary; require keeps it lazy, so a
    // guest without it still runs (unpinned) and says why.
    const koffi = createRequire(import.meta.url)('koffi');
    const lib = koffi.load('libc.so.6');
    const errnoLocation = lib.func('int *__errno_location()');
    let mlock2 = null;
    try {
      mlock2 = lib.func('int mlock2(void *addr, size_t len, unsigned int flags)');
    } catch {
      // An old glibc: callers fall back to mlock.
    }
    return {
      fns: {
        mlock: lib.func('int mlock(void *addr, size_t len)'),
        mlock2,
        munlock: lib.func('int munlock(void *addr, size_t len)'),
        madvise: lib.func('int madvise(void *addr, size_t len, int advice)'),
        mallopt: lib.func('int mallopt(int param, int value)'),
        sysconf: lib.func('long sysconf(int name)'),
        errno: () => koffi.decode(errnoLocation(), 'int'),
        // Koffi keeps the errno of an async call (made on one of libuv's
        // threads) for its callback; errno() above reads the main thread's.
        asyncErrno: () => koffi.errno(),
      },
      reason: '',
    };
  } catch (err) {
    return { fns: null, reason: `native memory calls are unavailable: ${err instanceof Error ? err.message : String(err)}` };
  }
}
