// The one call page fusion needs from native code, behind a tiny interface:
// the registry is tested with a fake, and the real one is libc's madvise in
// ../native/libc.ts (the same FFI door as the balloon's mlock).
import { MADV_MERGEABLE, MADV_UNMERGEABLE, madvise } from '../native/libc.js';

/** The outcome of an advice: ok, or why not. */
export type AdviceResult = { ok: true } | { ok: false; message: string };

/** Marks memory mergeable or not for KSM (madvise MADV_MERGEABLE / MADV_UNMERGEABLE). */
export interface MergeAdvisor {
  /** `bytes` starts on a page boundary; the kernel rounds its length up to whole pages. */
  advise(bytes: Uint8Array, mergeable: boolean): AdviceResult;
}

/** The real advisor: libc madvise through koffi. */
export const libcMergeAdvisor: MergeAdvisor = {
  advise(bytes, mergeable) {
    const r = madvise(bytes, mergeable ? MADV_MERGEABLE : MADV_UNMERGEABLE);
    return r.ok ? r : { ok: false, message: r.message };
  },
};
