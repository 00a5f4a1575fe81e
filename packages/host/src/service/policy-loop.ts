// The automatic balloon policy on a timer: reads the running auto-mode VMs,
// asks the pure engine (../policy/) for new targets and applies them through
// the same path as controlvm. Inflates go first, so that the deflates they
// fund find the memory free.
import type { Logger } from 'pino';
import { policyVmInputFromView } from '../policy/adapter.js';
import type { PolicyConfig } from '../policy/config.js';
import { createPolicyEngine, type PolicyEngine } from '../policy/engine.js';
import type { PolicyInput, PolicyVmInput } from '../policy/types.js';
import type { HostService } from './host-service.js';

/** Builds one round's input from the service's state. */
export function policyInput(service: Pick<HostService, 'snapshot'>, nowMs: number): PolicyInput {
  const { host, vms } = service.snapshot();
  return {
    nowMs,
    poolSizeMib: host.pool.sizeMib,
    // Signed, unlike the pool's freeMib (0 while overcommitted): a guest that
    // deflated on its own can leave the pool holding more than its size, and
    // the engine then sees its margin short by that much more and reclaims
    // from the other auto guests, within their limits, until it is paid back.
    poolFreeMib: host.pool.sizeMib - host.pool.heldMib,
    // The adapter is the one translation of the registry's settings (balloon
    // max 0 = only the 90 % rule) into the engine's.
    vms: vms.map(policyVmInputFromView).filter((vm): vm is PolicyVmInput => vm !== undefined),
  };
}

/** What a policy round needs of the service (HostService; a stand-in in tests); autoPolicyRunning lets it skip a round cheaply. */
export type PolicyLoopService = Pick<HostService, 'snapshot' | 'setBalloon'> & Partial<Pick<HostService, 'autoPolicyRunning'>>;

/**
 * One policy round: reads the state, asks the engine, applies its changes
 * through setBalloon (like controlvm, but never reclaiming: the engine has
 * already funded every change from the free quota). Resolves once all are
 * applied or refused; never rejects.
 */
export async function runPolicyRound(service: PolicyLoopService, engine: PolicyEngine, logger: Logger, nowMs: number): Promise<void> {
  // No auto-mode guest: nothing to decide, and at 1,000 guests the snapshot
  // of every VM each second was most of the round's cost.
  if (service.autoPolicyRunning?.() === false) return;
  const input = policyInput(service, nowMs);
  if (input.vms.length === 0) return;
  const decision = engine.step(input);
  // Inflates first: they cost nothing, and a deflate refused now is retried next round.
  const ordered = [...decision.changes].sort((a, b) => b.targetMib - b.previousTargetMib - (a.targetMib - a.previousTargetMib));
  for (const change of ordered) {
    try {
      await service.setBalloon(change.name, change.targetMib, 'policy', { reclaim: false });
      logger.info(
        { vm: change.name, fromMib: change.previousTargetMib, targetMib: change.targetMib, reason: change.reason, detail: change.detail },
        'policy moved a balloon',
      );
    } catch (err) {
      logger.warn({ vm: change.name, targetMib: change.targetMib, err: (err as Error).message }, 'policy change not applied');
    }
  }
}

/** Starts the policy timer (`overrides` tune the engine, e.g. its safety margin); returns the function that stops it. */
export function startPolicyLoop(service: PolicyLoopService, logger: Logger, intervalMs: number, overrides: Partial<PolicyConfig> = {}): () => void {
  const engine = createPolicyEngine({ ...overrides, policyIntervalMs: intervalMs });
  let busy = false;
  const timer = setInterval(() => {
    // A round still applying its changes is not overtaken: the next one would decide on stale targets.
    if (busy) return;
    busy = true;
    void runPolicyRound(service, engine, logger, performance.now()).finally(() => {
      busy = false;
    });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
