// Types of ./pages.mjs (plain JS).

/** Writes one distinct non-zero word per page (seed, seed + 1, …): commits the pages and keeps them unmergeable. */
export function touchPages(sab: SharedArrayBuffer, seed: number, pageWords: number): void;

/** The first page not holding its word from touchPages, or -1 when all do. */
export function firstBadPage(sab: SharedArrayBuffer, seed: number, pageWords: number): number;
