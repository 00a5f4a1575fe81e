// Types of ./libc-binding.mjs (plain JS).

/** The callback of a koffi async call: a koffi error, or the C function's result. */
export type AsyncDone = (err: unknown, result: number) => void;

/** A libc function bound by koffi: called here, or `.async` on libuv's thread pool (the callback runs on this thread). */
export interface BoundFunction<A extends unknown[]> {
  (...args: A): number;
  async(...args: [...A, AsyncDone]): void;
}

/** The raw libc functions; return values and errno as libc gives them. */
export interface LibcFunctions {
  mlock: BoundFunction<[addr: Uint8Array, len: number]>;
  /** mlock2 (flags: MLOCK_ONFAULT = 1); null where glibc lacks it. */
  mlock2: ((addr: Uint8Array, len: number, flags: number) => number) | null;
  munlock(addr: Uint8Array, len: number): number;
  madvise: BoundFunction<[addr: Uint8Array, len: number, advice: number]>;
  mallopt(param: number, value: number): number;
  sysconf: BoundFunction<[name: number]>;
  errno(): number;
  /** errno of the async call whose callback is running (koffi keeps it per call). */
  asyncErrno(): number;
}

/** Binds libc: the functions, or why they are unavailable. */
export function bindLibc(): { fns: LibcFunctions | null; reason: string };
