// Support for tests that run a balloon in a child process (so the vitest
// worker's own allocations do not blur the kernel's figures) and read what
// the kernel says about it.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** VmRSS or VmLck of a process in MiB, read from /proc/PID/status. */
export function procMib(pid: number, key: 'VmRSS' | 'VmLck'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no ${key} for ${pid}`);
  return Number(m[1]) / 1024;
}

/**
 * MiB of a process's pages that are resident AND in locked ranges, from
 * /proc/PID/smaps_rollup: VmLck counts locked ranges whether or not their
 * pages are there (mlock2 MLOCK_ONFAULT marks a range before it is faulted
 * in), this counts the pages really pinned.
 */
export function lockedResidentMib(pid: number): number {
  const m = /^Locked:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  if (!m?.[1]) throw new Error(`no Locked in smaps_rollup of ${pid}`);
  return Number(m[1]) / 1024;
}

/** The promise's value, or a failure naming what never happened within the deadline (generous: a stalled balloon never gets there at all; a slow CI machine does). */
export async function within<T>(promise: Promise<T>, what: string, timeoutMs = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${timeoutMs} ms (stalled)`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sends `msg` to a forked child and resolves with its first answer whose `op`
 * is `op`, or fails naming the request once the deadline passes.
 */
export function askChild<T>(child: ChildProcess, msg: object, op: string, timeoutMs?: number): Promise<T> {
  const answer = new Promise<T>((resolve) => {
    const on = (m: { op: string }) => {
      if (m.op === op) {
        child.off('message', on);
        resolve(m as T);
      }
    };
    child.on('message', on);
  });
  child.send(msg);
  return within(answer, `the child's answer to ${op}`, timeoutMs);
}

/** A balloon engine running in a forked child (balloon/rss-child.fixture.ts). */
export interface BalloonChild {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Sends a request and waits for the child's answer of that `op`. */
  ask<T>(msg: object, op: string): Promise<T>;
  /** Closes the engine (it deflates) and waits for the child to exit. */
  stop(): Promise<void>;
}

/** Forks the balloon child with `args` and waits until it says it is ready. */
export async function startBalloonChild(args: string[] = []): Promise<BalloonChild> {
  const fixture = fileURLToPath(new URL('../balloon/rss-child.fixture.ts', import.meta.url));
  const child = fork(fixture, args, { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const [m] = (await within(once(child, 'message'), 'the balloon child to start')) as [{ op: string }];
  if (m.op !== 'ready') throw new Error(`the balloon child said ${m.op} instead of ready`);
  return {
    child,
    pid: child.pid!,
    ask: <T>(msg: object, op: string) => askChild<T>(child, msg, op),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      await askChild(child, { op: 'close' }, 'close');
      await within(exited, 'the balloon child to exit');
    },
  };
}
