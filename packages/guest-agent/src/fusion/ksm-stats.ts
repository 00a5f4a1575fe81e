// What the kernel has merged of this process: /proc/self/ksm_merging_pages
// (Linux 5.19+), else /proc/self/ksm_stat. Zero where neither exists (not
// Linux, old kernel): nothing is merged that we could prove.
import { readFileSync } from 'node:fs';

/** Parses /proc/PID/ksm_merging_pages (a bare number) or ksm_stat ("ksm_merging_pages N"); null if absent. */
export function parseKsmMergingPages(text: string): number | null {
  const bare = /^\s*(\d+)\s*$/.exec(text);
  if (bare?.[1]) return Number(bare[1]);
  const stat = /^ksm_merging_pages\s+(\d+)\s*$/m.exec(text);
  return stat?.[1] ? Number(stat[1]) : null;
}

/** Pages of process `pid` (default: this one) that KSM has merged; 0 where the kernel cannot say. */
export function ksmMergingPages(pid: number | 'self' = 'self'): number {
  for (const file of ['ksm_merging_pages', 'ksm_stat']) {
    try {
      const n = parseKsmMergingPages(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
      if (n !== null) return n;
    } catch {
      // Not there on this kernel: try the next source.
    }
  }
  return 0;
}
