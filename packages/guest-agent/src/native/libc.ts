// The one door to native code: libc's memory calls through koffi (a
// maintained FFI package with prebuilt binaries, so no addon of our own).
// Every call returns a typed result instead of throwing, because a refused or
// missing call is a normal state of a guest (no CAP_IPC_LOCK, not Linux, no
// koffi binary) that the balloon must report, not crash on.
import { bindLibc, type LibcFunctions } from './libc-binding.mjs';

/** madvise advice: let KSM merge these pages (page fusion). */
export const MADV_MERGEABLE = 12;
/** madvise advice: undo MADV_MERGEABLE. */
export const MADV_UNMERGEABLE = 13;
/** madvise advice: drop the pages now; the next touch reads zeros. */
export const MADV_DONTNEED = 4;
/** madvise advice: MADV_DONTNEED that also drops locked pages (Linux 5.18+; EINVAL before). */
export const MADV_DONTNEED_LOCKED = 24;
/** madvise advice: fault the range in for writing now (Linux 5.14+; EINVAL before). */
export const MADV_POPULATE_WRITE = 23;
/** mlock2 flag: lock pages as they are faulted in, not now. */
export const MLOCK_ONFAULT = 1;
/** mallopt parameter: allocations of at least this many bytes use mmap. */
export const M_MMAP_THRESHOLD = -3;

/** Why a native call did not succeed. */
export type NativeFailure = 'unavailable' | 'not_permitted' | 'failed';

/** The result of a native call: ok, or why not, with errno where there is one. */
export type NativeResult = { ok: true } | { ok: false; failure: NativeFailure; errno: number; message: string };

/** Memory a native call works on: a view of an (often Shared)ArrayBuffer. */
export type NativeMemory = Uint8Array;

const EPERM = 1;
const EAGAIN = 11;
const ENOMEM = 12;
const EINVAL = 22;
const ENOSYS = 38;
const _SC_PAGESIZE = 30;

const ERRNO_NAMES: Record<number, string> = {
  [EPERM]: 'EPERM',
  [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM',
  [EINVAL]: 'EINVAL',
  [ENOSYS]: 'ENOSYS',
};

let bound: LibcFunctions | null | undefined;
let unavailableReason = '';

function load(): LibcFunctions | null {
  if (bound !== undefined) return bound;
  const b = bindLibc();
  unavailableReason = b.reason;
  return (bound = b.fns);
}

function unavailable(): NativeResult {
  return { ok: false, failure: 'unavailable', errno: ENOSYS, message: unavailableReason };
}

function fromErrno(call: string, errno: number): NativeResult {
  const name = ERRNO_NAMES[errno] ?? `errno ${errno}`;
  const failure: NativeFailure = errno === EPERM || errno === ENOMEM || errno === EAGAIN ? 'not_permitted' : 'failed';
  // mlock's ENOMEM/EAGAIN mean RLIMIT_MEMLOCK was reached: a permission limit,
  // not a lack of memory (the pages are already committed when we lock).
  return { ok: false, failure, errno, message: `${call} failed with ${name}` };
}

/** Whether the native calls could be loaded (Linux with koffi). */
export function nativeAvailable(): boolean {
  return load() !== null;
}

/** Why the native calls are unavailable ('' when they are available). */
export function nativeUnavailableReason(): string {
  load();
  return unavailableReason;
}

/** Pins memory (mlock); needs root, CAP_IPC_LOCK or enough RLIMIT_MEMLOCK. */
export function mlock(mem: NativeMemory): NativeResult {
  const b = load();
  if (!b) return unavailable();
  return b.mlock(mem, mem.byteLength) === 0 ? { ok: true } : fromErrno('mlock', b.errno());
}

/**
 * Marks memory to be pinned as it is faulted in (mlock2 with MLOCK_ONFAULT):
 * the range counts as locked at once (VmLck), but nothing is populated, so
 * the call holds the process's mmap lock only briefly. `unavailable` where
 * libc or the kernel lacks mlock2 (EINVAL/ENOSYS): then use mlock.
 */
export function mlockOnFault(mem: NativeMemory): NativeResult {
  const b = load();
  if (!b) return unavailable();
  if (!b.mlock2) return { ok: false, failure: 'unavailable', errno: ENOSYS, message: 'mlock2 is not in this libc' };
  if (b.mlock2(mem, mem.byteLength, MLOCK_ONFAULT) === 0) return { ok: true };
  const errno = b.errno();
  if (errno === EINVAL || errno === ENOSYS)
    return { ok: false, failure: 'unavailable', errno, message: `mlock2(MLOCK_ONFAULT) failed with ${ERRNO_NAMES[errno]}` };
  return fromErrno('mlock2', errno);
}

/** Unpins memory (munlock); must come before madvise(MADV_DONTNEED) or freeing. */
export function munlock(mem: NativeMemory): NativeResult {
  const b = load();
  if (!b) return unavailable();
  return b.munlock(mem, mem.byteLength) === 0 ? { ok: true } : fromErrno('munlock', b.errno());
}

/** Gives the kernel advice on memory (madvise); the start must be page-aligned. */
export function madvise(mem: NativeMemory, advice: number): NativeResult {
  const b = load();
  if (!b) return unavailable();
  return b.madvise(mem, mem.byteLength, advice) === 0 ? { ok: true } : fromErrno('madvise', b.errno());
}

/** Tunes glibc malloc (mallopt); mallopt returns 1 on success, 0 on error. */
export function mallopt(param: number, value: number): NativeResult {
  const b = load();
  if (!b) return unavailable();
  return b.mallopt(param, value) === 1 ? { ok: true } : { ok: false, failure: 'failed', errno: EINVAL, message: `mallopt(${param}, ${value}) was refused` };
}

/** The system page size in bytes (4096 where the native calls are unavailable). */
export function pageSizeBytes(): number {
  const b = load();
  if (!b) return 4096;
  const n = b.sysconf(_SC_PAGESIZE);
  return n > 0 ? n : 4096;
}

/** What an async fault-in does: populate for writing (madvise MADV_POPULATE_WRITE), or mlock (pins and populates). */
export type FaultInHow = 'populate' | 'mlock';

/** The end of an async native call: `err` when the call itself failed (koffi could not make it), else libc's result. */
export type AsyncNativeDone = (err: unknown, result: NativeResult) => void;

/**
 * Faults memory in on one of libuv's threads (koffi's async call: no
 * isolate, no thread of our own), then calls `done` on this thread. The
 * memory is passed as the pointer itself (a view of a SharedArrayBuffer is
 * not copied). Throws where the call cannot even be queued (koffi's queue is
 * full); `unavailable` comes back at once, synchronously, without libc.
 */
export function faultInAsync(mem: NativeMemory, how: FaultInHow, done: AsyncNativeDone): void {
  const b = load();
  if (!b) {
    done(null, unavailable());
    return;
  }
  const call = how === 'mlock' ? 'mlock' : 'madvise';
  const finish = (err: unknown, r: number) => {
    if (err) done(err, { ok: false, failure: 'failed', errno: 0, message: `${call} failed: ${err instanceof Error ? err.message : String(err)}` });
    else done(null, r === 0 ? { ok: true } : fromErrno(call, b.asyncErrno()));
  };
  if (how === 'mlock') b.mlock.async(mem, mem.byteLength, finish);
  else b.madvise.async(mem, mem.byteLength, MADV_POPULATE_WRITE, finish);
}

/**
 * Makes one trivial async call, so that libuv's thread pool (which Node
 * starts at its first use) exists before the first inflate: what its threads
 * cost is then the agent's from the start. `done` runs on this thread.
 */
export function startAsyncThreads(done: () => void): void {
  const b = load();
  if (!b) {
    done();
    return;
  }
  try {
    b.sysconf.async(_SC_PAGESIZE, () => done());
  } catch {
    done();
  }
}
