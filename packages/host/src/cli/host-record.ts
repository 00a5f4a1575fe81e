// Where a running balloon-host says it is: one small JSON file per listening
// host (its URL, data directory and pid) in a per-user directory. balloonctl
// on the same machine reads the record of the URL it talks to and so finds
// that host's admin token without flags, whatever data directory the host
// was started with (`npm start` uses .data/demo). Pure file logic: no logger.
//
// Why a record rather than guessing data directories: the host is the only
// one that knows where its token is; a record keyed by the URL sends the
// token only to the host that wrote it. The directory is 0700 and a record
// owned by another user, or of a process that is gone, is ignored.
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** What a host record says. */
export interface HostRecord {
  url: string;
  dataDir: string;
  pid: number;
}

/**
 * The directory of host records: MEMBALLOON_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/memballoon (a tmpfs cleared at boot, where it exists),
 * else ~/.local/state/memballoon/hosts. Takes the environment as an argument:
 * only the config modules read process.env.
 */
export function hostRecordDir(env: NodeJS.ProcessEnv): string {
  if (env.MEMBALLOON_RUNTIME_DIR) return env.MEMBALLOON_RUNTIME_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'memballoon');
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'memballoon', 'hosts');
}

/** The record's file for a base URL: its scheme, host and port with anything odd replaced. */
export function hostRecordFile(dir: string, url: string): string {
  return join(dir, `${canonicalUrl(url).replace(/[^A-Za-z0-9.-]+/g, '_')}.json`);
}

/** A base URL as records compare it: lower case, no trailing slash, default ports spelled out. */
export function canonicalUrl(url: string): string {
  try {
    const u = new URL(url);
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    return `${u.protocol}//${u.hostname}:${port}`.toLowerCase();
  } catch {
    return url.replace(/\/+$/, '').toLowerCase();
  }
}

/** Writes the record of a host that listens now; returns the function that removes it (call on exit). */
export function writeHostRecord(dir: string, record: HostRecord): () => void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = hostRecordFile(dir, record.url);
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  renameSync(temp, file);
  return () => {
    // Only our own: a host that took the port over after us keeps its record.
    if (readHostRecordFile(file)?.pid === record.pid) rmSync(file, { force: true });
  };
}

/** The record of the host at `url`, if one of this user's hosts wrote it and is still alive. */
export function findHostRecord(dir: string, url: string): HostRecord | undefined {
  const record = readHostRecordFile(hostRecordFile(dir, url));
  if (!record || canonicalUrl(record.url) !== canonicalUrl(url) || !isAlive(record.pid)) return undefined;
  return record;
}

function readHostRecordFile(file: string): HostRecord | undefined {
  try {
    const st = statSync(file);
    // Another user's record could point us at a token we should not send them.
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return undefined;
    const value = JSON.parse(readFileSync(file, 'utf8')) as Partial<HostRecord>;
    if (typeof value.url !== 'string' || typeof value.dataDir !== 'string' || typeof value.pid !== 'number') return undefined;
    return { url: value.url, dataDir: value.dataDir, pid: value.pid };
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
