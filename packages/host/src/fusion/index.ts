// Page fusion, the host's side: the global sharing table of hinted pages, the
// session-level assembly of SharedRegion frames, and the KSM controller.
export * from './table.js';
export * from './hints.js';
export * from './ksm-policy.js';
export * from './ksm-sysfs.js';
export * from './ksmd-thread.js';
export * from './ksm-controller.js';
export * from './host-fusion.js';
