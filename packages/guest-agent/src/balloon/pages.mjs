// The page-touching code of the balloon: one copy for committing a chunk
// and for checking it, which must never disagree. (Plain JavaScript from
// when worker threads that loaded without tsx shared it.)

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
