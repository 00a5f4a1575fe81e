// The guest agent's public surface: what an embedder needs and nothing more.
// startAgent (the library: a balloon driven by a host), the BalloonEngine
// (a balloon without a host), the memory domains a guest can be measured by,
// the one error class, and page fusion's guest side. The raw libc binding,
// the /proc parsers and readers, the session and the wire helpers stay
// internal: they may change without notice.
export {
  startAgent,
  AGENT_VERSION,
  type AgentOptions,
  type AgentHandle,
  type AgentEvents,
  type AgentConnectionState,
  type ReadyOptions,
  type SettledOptions,
  type SessionPlugin,
} from './agent.js';
export { BalloonEngine, type BalloonEngineOptions, type BalloonEngineEvents } from './balloon/engine.js';
export { AgentError, AGENT_ERROR_CODES, type AgentErrorCode } from './errors.js';
export { silentLogger, type AgentLogger, type LogMethod } from './logger.js';
export type { BackoffOptions } from './client/backoff.js';
export { defaultFloorMib, type DomainKind, type DomainSource, type DomainStats, type DomainAvailability } from './domain/source.js';
export { MachineDomain, CgroupDomain, ProcessDomain, openDomain, findMemoryCgroup, type CgroupLocation, type OpenDomainOptions } from './domain/readers.js';
// Page fusion: shared regions (registerSharedRegion / --share-file), their page
// hashes and frames, the mergeable advice; createPageFusion().plugin is startAgent's `fusion`.
export * from './fusion/index.js';
