// Page fusion, the agent's side: shared regions, their page hashes and frames,
// the mergeable advice and what the kernel reports as merged.
export * from './aligned.js';
export * from './hashing.js';
export * from './frames.js';
export * from './advise.js';
export * from './ksm-stats.js';
export * from './registry.js';
export * from './link.js';
export * from './page-fusion.js';
