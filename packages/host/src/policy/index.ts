// The automatic balloon policy (issue 7): a pure engine, its limits and
// invariants, the baselines and the simulator. See README.md.
export { createPolicyEngine, initialPolicyState, ourPolicy, policyStep, type PolicyEngine } from './engine.js';
export { DEFAULT_POLICY_CONFIG, resolvePolicyConfig, type PolicyConfig } from './config.js';
export { grantCostMib, heldMib, policyBalloonCapMib } from './limits.js';
export { decisionViolations } from './invariants.js';
export { engineBalloonMaxMib, policyVmInputFromView } from './adapter.js';
export { waterFillMib, type AllocationClaim } from './allocate.js';
export { vboxBalloonCtrlPolicy, VBOX_BALLOONCTRL_DEFAULTS } from './baselines/vboxBalloonCtrl.js';
export { momDefaultPolicy, MOM_BALLOON_DEFAULTS } from './baselines/momDefault.js';
export type {
  BalloonPolicy,
  PolicyDecision,
  PolicyGuestStats,
  PolicyInput,
  PolicyReasonCode,
  PolicyState,
  PolicyStepResult,
  PolicyTargetChange,
  PolicyVmInput,
  PolicyVmSettings,
  PolicyVmState,
} from './types.js';
