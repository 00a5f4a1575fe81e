// Support for tests that run a balloon in a child process (so the vitest
// worker's own allocations do not blur the kernel's figures) and read what
// the kernel says about it.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** VmRSS or VmLck of a process in MiB, read from /proc/PID/status. */
export function procMib(pid: number, key: 'VmRSS' | 'VmLck'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no ${key} for ${pid}`);
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
