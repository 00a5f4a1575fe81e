// A re-implementation of VirtualBox's VBoxBalloonCtrl rule
// (src/VBox/Frontends/VBoxBalloonCtrl/VBoxModBallooning.cpp, balloonGetDelta)
// with its default constants, mapped onto our inputs: the guest's free memory
// is GuestStats.freeMib (VirtualBox reads Guest/RAM/Usage/Free), the requested
// balloon is the VM's balloonMaxMib (per-VM BalloonSizeMax), and the host's
// available RAM is the pool's free quota. It is a baseline for the simulator,
// not something the host runs.
import type { BalloonPolicy, PolicyInput, PolicyStepResult, PolicyTargetChange } from '../types.js';

/** VBoxBalloonCtrl's defaults (g_cMb* in VBoxModBallooning.cpp). */
export const VBOX_BALLOONCTRL_DEFAULTS = Object.freeze({
  /** g_cMbMemoryBalloonIncrement: inflate step. */
  balloonIncrementMib: 256,
  /** g_cMbMemoryBalloonDecrement: deflate step. */
  balloonDecrementMib: 128,
  /** g_cMbMemoryBalloonLowerLimit: guest free memory below this deflates. */
  balloonLowerLimitMib: 128,
  /** g_cbMemoryBalloonSafety (in MB despite its name): host RAM kept free when deflating. */
  balloonSafetyMarginMib: 1024,
  /** g_cMsMemoryBalloonTimeout: how often it runs. */
  balloonIntervalMs: 30_000,
});

/** Constants of the VBoxBalloonCtrl rule. */
export type VBoxBalloonCtrlConfig = { readonly [K in keyof typeof VBOX_BALLOONCTRL_DEFAULTS]: number };

/** VBoxBalloonCtrl's balloonGetDelta, in MiB: <0 deflate, >0 inflate. */
export function vboxBalloonDeltaMib(
  config: VBoxBalloonCtrlConfig,
  guestFreeMib: number,
  balloonOldMib: number,
  balloonNewRequestedMib: number,
  balloonMaxMib: number,
  hostAvailableMib: number,
): number {
  let balloonNewMib = balloonNewRequestedMib;
  if (balloonMaxMib && balloonNewMib > balloonMaxMib) balloonNewMib = balloonMaxMib;
  let deltaMib = 0;
  if (guestFreeMib < config.balloonLowerLimitMib) {
    deltaMib = -config.balloonDecrementMib;
    if (balloonOldMib + deltaMib < 0) deltaMib = 0;
  } else if (balloonNewMib > balloonOldMib) {
    // The original subtracts uint32_t values: with less free memory than the
    // increment the difference wraps to ~4 GiB, the halving loop stops at once
    // and the full increment is applied. Kept on purpose: this is the rule as shipped.
    const u32Sub = (a: number, b: number): number => (a - b) >>> 0;
    let incrementMib: number = config.balloonIncrementMib;
    while (incrementMib >= 16 && u32Sub(guestFreeMib, incrementMib) < config.balloonLowerLimitMib) incrementMib = Math.floor(incrementMib / 2);
    if (u32Sub(guestFreeMib, incrementMib) > config.balloonLowerLimitMib) deltaMib = incrementMib;
    if (balloonOldMib + deltaMib > balloonNewMib) deltaMib = Math.min(config.balloonIncrementMib, balloonNewMib - balloonOldMib);
  } else if (balloonNewMib < balloonOldMib) {
    deltaMib = -Math.min(config.balloonDecrementMib, balloonOldMib - balloonNewMib);
  }
  if (deltaMib < 0) {
    if (hostAvailableMib < config.balloonSafetyMarginMib) deltaMib = 0;
    else if (-deltaMib > hostAvailableMib - config.balloonSafetyMarginMib) {
      deltaMib = -Math.floor(hostAvailableMib - config.balloonSafetyMarginMib);
    }
  }
  return Math.trunc(deltaMib);
}

/** The VBoxBalloonCtrl rule as a BalloonPolicy (stateless: it reads the current balloon each round). */
export function vboxBalloonCtrlPolicy(overrides: Partial<VBoxBalloonCtrlConfig> = {}): BalloonPolicy<null> {
  const config = { ...VBOX_BALLOONCTRL_DEFAULTS, ...overrides };
  return {
    name: 'VBoxBalloonCtrl',
    initialState: () => null,
    step(state, input: PolicyInput): PolicyStepResult<null> {
      const changes: PolicyTargetChange[] = [];
      for (const vm of input.vms) {
        // "If guest statistics are not up and running yet, skip this iteration."
        if (vm.stats === undefined || (vm.stats.freeMib <= 0 && vm.stats.availableMib <= 0)) continue;
        // VirtualBox reads Guest/RAM/Usage/Balloon, the balloon the guest reports.
        const balloonCurMib = vm.actualMib;
        const requestedMib = vm.settings.balloonMaxMib;
        const deltaMib = vboxBalloonDeltaMib(config, Math.max(0, Math.floor(vm.stats.freeMib)), balloonCurMib, requestedMib, 0, input.poolFreeMib);
        if (deltaMib === 0) continue;
        const targetMib = balloonCurMib + deltaMib;
        if (targetMib === vm.targetMib) continue;
        changes.push({
          name: vm.name,
          previousTargetMib: vm.targetMib,
          targetMib,
          reason: deltaMib < 0 ? 'pressure' : 'reclaim',
          detail: `free ${vm.stats.freeMib} MiB: ${deltaMib > 0 ? 'inflate' : 'deflate'} ${Math.abs(deltaMib)} MiB`,
        });
      }
      return { state, decision: { changes, poolFreeAfterMib: input.poolFreeMib, unmetDemandMib: 0 } };
    },
  };
}
