// @memballoon/host: the host service as a library. What an embedder needs:
// start a host (startHost), drive it (HostHandle.service: typed createVm,
// modifyVm, setBalloon, snapshot, subscribe), read its state (the read model
// of ./service/views.ts, the same JSON the admin API and `balloonctl --json`
// give), and tell its errors apart (HostError, one closed code set). The
// pool, registry, sessions, policy, dashboard and metrics are internal.
export { startHost, baseUrlOf, type StartHostOptions, type HostHandle } from './server.js';
export type { HostService, TargetSource } from './service/host-service.js';
export type { CreateVmInput, VmPatch } from './service/vm-settings.js';
export type * from './service/views.js';
// The admin API's client (balloonctl's): JSON in and out, every refusal a HostError with the API's code.
export { AdminClient } from './cli/client.js';
export { HostError, HOST_ERROR_CODES, HTTP_STATUS_OF, WIRE_CODE_OF, isHostErrorCode, type HostErrorCode } from './errors.js';
// VirtualBox's balloon rules, for callers that size balloons themselves.
export { autoBalloonCapMib, balloonLimitMib, balloonTargetProblem, heldMib, type BalloonCapSettings } from './pool/balloon-rules.js';
// The options of startHost: per-connection limits, page-fusion hooks and settings.
export { DEFAULT_SESSION_LIMITS, type SessionLimits } from './session/limits.js';
export type { GuestFrameHooks } from './session/guest-session.js';
export type { HostFusionOptions } from './fusion/host-fusion.js';
// Process configuration as balloon-host reads it (flags and environment), for an embedder's own main.
export { loadHostConfig, defaultPoolSizeMib, parseListen, DEFAULT_LISTEN, type HostConfig } from './config.js';
// KSM on this machine (page fusion): whether it can be driven, its state, and its driver lock.
export { probeKsm, KsmSysfs, DEFAULT_KSM_LOCK_PATH, KSM_SYSFS_DIR, type KsmState, type KsmProbe } from './fusion/ksm-sysfs.js';
export { KsmController, type KsmControllerOptions, type KsmStatusView } from './fusion/ksm-controller.js';
// Managed guests (startvm, poweroff, modifyvm --cgroup): memory cgroups v1 and v2, the launcher, their views.
export * from './cgroup/index.js';
export { GuestLauncher, DEFAULT_POWEROFF_GRACE_MS, type LauncherOptions, type StartRequest } from './guests/launcher.js';
export type { GuestsCollaborator, GuestsHostView, ManagedGuestView } from './guests/views.js';
export { type HostGuestsOptions, defaultAgentCommand } from './server.js';
