// The common content of the page fusion benchmark: every page distinct, the
// same for every guest of one seed.

/** Fills `bytes` (a whole number of 4 KiB pages) with the content of `seed`. */
export function fillCommon(bytes: Uint8Array, seed: number): void {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const wordsPerPage = 1024;
  for (let p = 0; p < words.length / wordsPerPage; p++) {
    let x = (seed ^ Math.imul(p + 1, 0x9e3779b1)) >>> 0;
    for (let w = 0; w < wordsPerPage; w++) words[p * wordsPerPage + w] = x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
  }
}
