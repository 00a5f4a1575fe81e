// One host per data directory. Two hosts on one registry each keep its VMs in
// memory (a modifyvm on one is never seen by the other), count their own
// pools, and with cgroups drive the same limits. <data-dir>/host.pid names the
// holder by pid and start time (so a reused pid is told apart); a holder that
// is gone (kill -9) is taken over. Several hosts in one process (tests,
// embedders) share the claim.
import { closeSync, constants, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { HostError } from '../errors.js';
import { procStartTicks } from '../guests/proc.js';

/** The claim's file name inside the data directory. */
export const CLAIM_FILE = 'host.pid';

/** Claims of this process, by path: how many hosts hold each. */
const heldHere = new Map<string, number>();

function readClaim(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Claims `dataDir` for this process and returns its release. Throws
 * HostError('unavailable') naming the live process that holds it, or
 * HostError('storage') when the file cannot be made.
 */
export function claimDataDir(dataDir: string): () => void {
  const path = join(dataDir, CLAIM_FILE);
  const mine = `${process.pid} ${procStartTicks(process.pid) ?? 0}\n`;
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new HostError('storage', `cannot create the data directory ${dataDir}: ${(err as Error).message}`, { cause: err });
  }
  for (let attempt = 0; ; attempt++) {
    try {
      // O_NOFOLLOW: a link planted at the name is never written through.
      const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        writeSync(fd, mine);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) {
        throw new HostError('storage', `cannot claim the data directory (${path}): ${(err as Error).message}`, { cause: err });
      }
      const text = readClaim(path);
      if (text === mine) break;
      const [pid, ticks] = text.trim().split(' ').map(Number);
      if (pid !== undefined && pid > 0 && ticks !== undefined && procStartTicks(pid) === ticks) {
        throw new HostError(
          'unavailable',
          `the data directory ${dataDir} is in use by balloon-host pid ${pid}: stop that host first, or give this one another --data-dir`,
        );
      }
      try {
        rmSync(path, { force: true }); // its holder is gone (or the file is not a claim)
      } catch (rmErr) {
        throw new HostError('storage', `cannot claim the data directory: remove ${path}`, { cause: rmErr });
      }
    }
  }
  heldHere.set(path, (heldHere.get(path) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (heldHere.get(path) ?? 1) - 1;
    if (left > 0) {
      heldHere.set(path, left);
      return;
    }
    heldHere.delete(path);
    if (readClaim(path) === mine) rmSync(path, { force: true });
  };
}
