// The guest agent's public surface: startAgent (library), the BalloonEngine
// (usable alone, without a host), the memory domains and the /proc parsers.
export { startAgent, AGENT_VERSION, type AgentOptions, type AgentHandle, type AgentEvents, type AgentConnectionState, type SessionPlugin } from './agent.js';
export { BalloonEngine, type BalloonEngineOptions, type BalloonEngineEvents } from './balloon/engine.js';
export { AgentError, AGENT_ERROR_CODES, type AgentErrorCode } from './errors.js';
export { silentLogger, type AgentLogger, type LogMethod } from './logger.js';
export { toMemoryStats } from './stats.js';
export { backoffDelayMs, type BackoffOptions } from './client/backoff.js';
export { guestEndpoint } from './client/url.js';
export { defaultFloorMib, type DomainKind, type DomainSource, type DomainStats, type DomainAvailability } from './domain/source.js';
export {
  MachineDomain,
  CgroupDomain,
  ProcessDomain,
  openDomain,
  chooseDomain,
  findMemoryCgroup,
  cgroupLimitBytes,
  readMachineMemory,
  readProcessTree,
  processRssBytes,
  processLockedBytes,
  ksmMergedBytes,
  type CgroupLocation,
  type DomainChoiceInput,
  type OpenDomainOptions,
  type TreeProcess,
} from './domain/readers.js';
export {
  parseMeminfo,
  parseKeyValues,
  parsePressure,
  parseProcStatus,
  parseProcStat,
  parseProcCgroup,
  parseCgroupLimit,
  type PsiLine,
  type ProcStatusMemory,
  type ProcStat,
  type CgroupEntry,
} from './domain/parsers.js';
export * as libc from './native/libc.js';
// Page fusion: shared regions (registerSharedRegion / --share-file), their page
// hashes and frames, the mergeable advice; createPageFusion().plugin is startAgent's `fusion`.
export * from './fusion/index.js';
