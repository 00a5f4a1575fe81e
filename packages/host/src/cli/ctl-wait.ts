// `controlvm NAME guestmemoryballoon MIB --wait`: what the operator sees while
// the host works. The PUT itself may take a while (a deflate that the pool's
// free quota cannot cover waits for other VMs to inflate first), so the
// reclaim is shown as it happens by polling the VM list, then this VM's
// balloon until it reaches the target. Progress goes to stderr: stdout keeps
// only the result, for scripts.
import type { VmView } from '../service/views.js';
import { HostError } from '../errors.js';
import type { AdminClient } from './client.js';
import { progressBar, reasonText } from './format.js';

/** How often the progress is polled (the host answers from memory: cheap). */
export const WAIT_POLL_MS = 100;

/** Where progress goes: a terminal redraws one line, anything else gets one line per change. */
export interface ProgressSink {
  tty: boolean;
  write(text: string): void;
}

/** Shows progress lines, each once; on a terminal, redrawn in place. */
class Progress {
  #last = '';
  #open = false;
  constructor(private readonly sink: ProgressSink | undefined) {}

  show(line: string): void {
    if (!this.sink || line === this.#last) return;
    this.#last = line;
    if (this.sink.tty) {
      this.sink.write(`\r\x1b[K${line}`);
      this.#open = true;
    } else this.sink.write(`${line}\n`);
  }

  /** Ends a line redrawn in place, so what follows starts on its own. */
  end(): void {
    if (this.#open) this.sink?.write('\n');
    this.#open = false;
  }
}

/** One line about the other VMs a reclaim is inflating: `reclaiming: vm-large 310/423 MiB, …`. */
export function reclaimLine(name: string, before: ReadonlyMap<string, number>, vms: readonly VmView[]): string | undefined {
  const moving = vms.filter(
    (v) => v.name !== name && v.balloon && v.balloon.targetMib > (before.get(v.name) ?? 0) && v.balloon.actualMib !== v.balloon.targetMib,
  );
  if (moving.length === 0) return undefined;
  return `VM '${name}': waiting for other VMs to inflate: ${moving.map((v) => `${v.name} ${v.balloon!.actualMib}/${v.balloon!.targetMib} MiB`).join(', ')}`;
}

/**
 * Sets the balloon and waits until the guest holds it. While the host is
 * still admitting the change, shows the other VMs' inflation; then this VM's
 * balloon. Fails with the host's message (it names the real shortfall), or
 * with the guest's reason if the balloon stops short, or after `timeoutMs`.
 */
export async function setBalloonAndWait(
  client: Pick<AdminClient, 'vms' | 'vm' | 'setBalloon'>,
  name: string,
  targetMib: number,
  timeoutMs: number,
  sink: ProgressSink | undefined,
): Promise<VmView> {
  const progress = new Progress(sink);
  const deadline = Date.now() + timeoutMs;
  const before = new Map((await client.vms(true)).map((v) => [v.name, v.balloon?.targetMib ?? 0] as const));
  let admitted = false;
  const put = client.setBalloon(name, targetMib).finally(() => (admitted = true));
  // Polls only while the PUT is pending; its errors are the PUT's to report.
  const watch = (async () => {
    while (!admitted) {
      await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
      if (admitted) return;
      const vms = await client.vms(true).catch(() => undefined);
      const line = vms && reclaimLine(name, before, vms);
      if (line && !admitted) progress.show(line);
    }
  })();
  let set: VmView;
  try {
    set = await put;
  } catch (err) {
    progress.end();
    throw err;
  } finally {
    await watch;
  }
  // A VM still starting kept the target: its generation is known once the
  // guest is admitted and the host has sent it.
  let generation = set.starting ? undefined : (set.balloon?.generation ?? 0);
  let startMib = set.balloon?.actualMib ?? 0;
  for (;;) {
    const vm = await client.vm(name);
    const b = vm.balloon;
    if (generation === undefined && (vm.starting || (b && b.targetMib !== targetMib))) {
      progress.show(`VM '${name}' is starting: balloon ${targetMib} MiB once its guest is admitted`);
      if (Date.now() >= deadline) {
        progress.end();
        throw new HostError('timeout', `VM '${name}' is still starting after ${Math.round(timeoutMs / 1000)} s (--timeout); its balloon target is kept`);
      }
      await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
      continue;
    }
    if (vm.state !== 'running' || !b) {
      progress.end();
      throw new HostError('not_running', `VM '${name}' stopped before its balloon reached ${targetMib} MiB`);
    }
    if (generation === undefined) {
      generation = b.generation;
      startMib = 0;
    }
    if (b.generation > generation) {
      progress.end();
      throw new HostError('cancelled', `VM '${name}': a newer balloon target (${b.targetMib} MiB) replaced ${targetMib} MiB before it was reached`);
    }
    progress.show(sink?.tty ? `VM '${name}': ${progressBar(b.actualMib, targetMib, startMib)}` : `VM '${name}': balloon ${b.actualMib}/${targetMib} MiB`);
    if (b.actualMib === targetMib) {
      progress.end();
      return vm;
    }
    if (b.state === 'short') {
      progress.end();
      throw new HostError('short', `VM '${name}': the balloon stopped short at ${b.actualMib} of ${targetMib} MiB: ${reasonText(b.reason)}`);
    }
    if (Date.now() >= deadline) {
      progress.end();
      throw new HostError('timeout', `VM '${name}': the balloon is at ${b.actualMib} of ${targetMib} MiB after ${Math.round(timeoutMs / 1000)} s (--timeout)`);
    }
    await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
  }
}
