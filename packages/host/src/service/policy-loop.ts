// The automatic balloon policy on a timer: reads the running auto-mode VMs,
// asks the pure engine (../policy/) for new targets and applies them through
// the same path as controlvm. Inflates go first, so that the deflates they
// fund find the memory free.
import type { Logger } from 'pino';
import { maxBalloonMib } from '../pool/balloon-rules.js';
import { createPolicyEngine } from '../policy/engine.js';
import type { PolicyInput } from '../policy/types.js';
import type { HostService } from './host-service.js';

/** Builds one round's input from the service's state. */
export function policyInput(service: HostService, nowMs: number): PolicyInput {
  const { host, vms } = service.snapshot();
  return {
    nowMs,
    poolSizeMib: host.pool.sizeMib,
    poolFreeMib: host.pool.freeMib,
    vms: vms
      .filter((v) => v.state === 'running' && v.balloonPolicy === 'auto' && v.balloon)
      .map((v) => ({
        name: v.name,
        memoryMib: v.memoryMib,
        targetMib: v.balloon!.targetMib,
        actualMib: v.balloon!.actualMib,
        settings: {
          memoryMinMib: v.memoryMinMib,
          // The registry's 0 means "not set": only the 90 % rule limits it.
          balloonMaxMib: v.balloonMaxMib > 0 ? v.balloonMaxMib : maxBalloonMib(v.memoryMib),
          memoryWeight: v.memoryWeight,
          memoryBufferPercent: v.memoryBufferPercent,
        },
        stats: v.stats && {
          availableMib: v.stats.availableMib,
          freeMib: v.stats.freeMib,
          cacheMib: v.stats.cacheMib,
          psiSomeAvg10Percent: v.stats.psiSomeAvg10Percent,
          psiFullAvg10Percent: v.stats.psiFullAvg10Percent,
        },
      })),
  };
}

/** Starts the policy timer; returns the function that stops it. */
export function startPolicyLoop(service: HostService, logger: Logger, intervalMs: number): () => void {
  const engine = createPolicyEngine({ policyIntervalMs: intervalMs });
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    const input = policyInput(service, performance.now());
    if (input.vms.length === 0) return;
    busy = true;
    void (async () => {
      const decision = engine.step(input);
      const ordered = [...decision.changes].sort((a, b) => b.targetMib - b.previousTargetMib - (a.targetMib - a.previousTargetMib));
      for (const change of ordered) {
        try {
          await service.setBalloon(change.name, change.targetMib, 'policy', { reclaim: false });
          logger.info({ vm: change.name, targetMib: change.targetMib, reason: change.reason, detail: change.detail }, 'policy moved a balloon');
        } catch (err) {
          logger.warn({ vm: change.name, targetMib: change.targetMib, err: (err as Error).message }, 'policy change not applied');
        }
      }
    })().finally(() => {
      busy = false;
    });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
