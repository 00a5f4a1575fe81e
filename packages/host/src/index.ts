// @memballoon/host: the host service as a library. startHost runs it all;
// the rest is exported for embedders and for the parts built on the service.
export { startHost, baseUrlOf, type StartHostOptions, type HostHandle } from './server.js';
export { HostService, type HostServiceOptions, type GuestLink, type AdmissionResult, type TargetSource } from './service/host-service.js';
export type { ServiceCounters } from './service/observer.js';
export { HostError, HOST_ERROR_CODES, HTTP_STATUS_OF, isHostErrorCode, type HostErrorCode } from './errors.js';
export { Pool, type PoolVm, type PoolVmView, type ReclaimPlan } from './pool/pool.js';
export { autoBalloonCapMib, balloonLimitMib, balloonTargetProblem, heldMib, type BalloonCapSettings } from './pool/balloon-rules.js';
export { Registry, type VmRecord, type VmSettings } from './registry/registry.js';
export { DEFAULT_SESSION_LIMITS, type SessionLimits } from './session/limits.js';
export { type GuestFrameHooks } from './session/guest-session.js';
export { loadHostConfig, defaultPoolSizeMib, parseListen, DEFAULT_LISTEN, type HostConfig } from './config.js';
export type * from './service/views.js';
// Page fusion: the sharing table of hinted pages, the frame hooks, the KSM controller.
export * from './fusion/index.js';
// The dashboard (page, assets, server-sent events) and the metrics (Prometheus, VirtualBox-named queries).
export { createDashboard, EVENTS_PATH, type Dashboard, type DashboardOptions, type SnapshotEvent } from './dashboard/index.js';
export { HostMetrics, queryMetrics, formatMetricsTable, MetricsQueryError } from './metrics/index.js';
export { KernelMemoryCgroup, kernelCgroupFs, CgroupError, type MemoryCgroup } from './cgroup/index.js';
export { HandOffDriver, type HandOffCgroup, type HandOffGuest, type HandOffView } from './handoff/driver.js';
export { planHandOff, reclaimedMib, type HandOffState, type HandOffStep } from './handoff/plan.js';
