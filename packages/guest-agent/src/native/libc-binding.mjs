// The raw koffi binding of libc's memory calls, in plain JavaScript so that
// the balloon's worker threads (which load without tsx) share it with the
// typed door in ./libc.ts. TypeScript code uses ./libc.ts, never this file.
import { createRequire } from 'node:module';

/**
 * Binds mlock, mlock2, munlock, madvise, mallopt, sysconf and errno once per
 * thread. Returns { fns } or { reason } when koffi or libc cannot be loaded.
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
      },
      reason: '',
    };
  } catch (err) {
    return { fns: null, reason: `native memory calls are unavailable: ${err instanceof Error ? err.message : String(err)}` };
  }
}
