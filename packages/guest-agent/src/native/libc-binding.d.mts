// Types of ./libc-binding.mjs (plain JS, shared with worker threads).

/** The raw libc functions; return values and errno as libc gives them. */
export interface LibcFunctions {
  mlock(addr: Uint8Array, len: number): number;
  /** mlock2 (flags: MLOCK_ONFAULT = 1); null where glibc lacks it. */
  mlock2: ((addr: Uint8Array, len: number, flags: number) => number) | null;
  munlock(addr: Uint8Array, len: number): number;
  madvise(addr: Uint8Array, len: number, advice: number): number;
  mallopt(param: number, value: number): number;
  sysconf(name: number): number;
  errno(): number;
}

/** Binds libc once per thread: the functions, or why they are unavailable. */
export function bindLibc(): { fns: LibcFunctions | null; reason: string };
