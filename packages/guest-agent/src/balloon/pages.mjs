// The page-touching code of the balloon, in plain JavaScript so that the
// main thread (TypeScript) and the worker threads (loaded without tsx) run
// the same copy: committing a chunk and checking it must never disagree.

/**
 * Writes one distinct non-zero word at the start of every page of a chunk:
 * it commits the page, and no two pages (of this balloon or any other) are
 * alike, so neither the zero page nor KSM can quietly take it back.
 */
export function touchPages(sab, seed, pageWords) {
  const words = new Uint32Array(sab);
  let value = seed;
  for (let i = 0; i < words.length; i += pageWords) words[i] = value++;
}

/**
 * Checks what touchPages wrote: the index of the first page that does not
 * hold its word, or -1 when every page does.
 */
export function firstBadPage(sab, seed, pageWords) {
  const words = new Uint32Array(sab);
  let expected = seed;
  for (let i = 0; i < words.length; i += pageWords, expected++) {
    if (words[i] === 0 || words[i] !== expected) return i / pageWords;
  }
  return -1;
}
