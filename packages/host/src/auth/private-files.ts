// The host's private files: the data directory and what it keeps there
// (admin.token, the registry). Whoever can write the directory can choose
// the admin token (replace the file, or plant a link to a file they wrote),
// so the directory must be ours and closed to others, and files are opened
// without following links and checked on the descriptor that is read, not
// on a path that could change in between. Every refusal says what to fix.
import { closeSync, constants, fstatSync, mkdirSync, openSync, readSync, statSync, writeSync, type Stats } from 'node:fs';
import { HostError } from '../errors.js';

const mode8 = (mode: number) => (mode & 0o7777).toString(8).padStart(3, '0');

/** The effective user id of this process (undefined where there is none, e.g. Windows). */
function ourUid(): number | undefined {
  return typeof process.geteuid === 'function' ? process.geteuid() : undefined;
}

/** What a private file holds, for the refusals that say why its owner or mode matter. */
export interface SecretKind {
  /** What whoever owns or writes the file can choose, e.g. 'the admin token'. */
  what: string;
  /** What whoever reads it can do, e.g. 'controls every balloon'. */
  readerCan: string;
}

/** The admin token's file (and the data directory, which holds it). */
export const ADMIN_SECRET: SecretKind = { what: 'the admin token', readerCan: 'controls every balloon' };

/** Why a file or directory's owner and mode make it unsafe, or null; `uid` null: any owner; `secret`: what the file holds. */
export function ownershipProblem(
  path: string,
  st: Pick<Stats, 'uid' | 'mode'>,
  kind: 'directory' | 'file',
  uid: number | null | undefined = ourUid(),
  secret: SecretKind = ADMIN_SECRET,
): string | null {
  if (uid !== undefined && uid !== null && st.uid !== uid) {
    return `${kind === 'directory' ? 'the data directory ' : ''}${path} belongs to user ${st.uid}, not to the user the host runs as (${uid}): whoever owns it can choose ${kind === 'directory' ? ADMIN_SECRET.what : secret.what}; run chown ${uid} ${path}`;
  }
  if (kind === 'directory' && (st.mode & 0o022) !== 0) {
    return `the data directory ${path} may be written by others (mode ${mode8(st.mode)}): anyone who can write it can choose the admin token; run chmod 700 ${path}`;
  }
  if (kind === 'file' && (st.mode & 0o077) !== 0) {
    return `${path} may be read or written by others (mode ${mode8(st.mode)}): whoever reads it ${secret.readerCan}; run chmod 600 ${path}`;
  }
  return null;
}

/**
 * Makes the data directory (mode 0700) if it is missing, and checks that it
 * is a directory that this user owns and nobody else may write. Throws a
 * HostError('unsafe_file') that says what to fix.
 */
export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new HostError('storage', `cannot create the data directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  // stat, not lstat: a data directory reached through a link the operator made is fine; what it is counts.
  const st = statSync(dir);
  if (!st.isDirectory()) throw new HostError('unsafe_file', `the data directory ${dir} is not a directory`);
  const problem = ownershipProblem(dir, st, 'directory');
  if (problem) throw new HostError('unsafe_file', problem);
}

function openNoFollow(path: string, flags: number, mode?: number): number {
  try {
    return openSync(path, flags | constants.O_NOFOLLOW, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new HostError(
        'unsafe_file',
        `${path} is a symbolic link, which the host does not follow for a secret: remove it (the host makes a new file) or put the real file there`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** How readPrivateFile checks the file. */
export interface ReadPrivateOptions {
  /**
   * The file must belong to this user (default true: the host's own
   * secrets). balloonctl reads the host's token as whichever user runs it
   * (root reading a service user's file is fine), so it checks only the mode.
   */
  ownedByUs?: boolean;
  /** A file this user may not open reads as missing (balloonctl then asks for the token) instead of an error. */
  unreadableIsMissing?: boolean;
  /** What the file holds, named in a refusal (default ADMIN_SECRET). */
  secret?: SecretKind;
}

/** Reads a private file without following links; undefined if it does not exist. Checks owner, mode and type on the open file. */
export function readPrivateFile(path: string, options: ReadPrivateOptions = {}): string | undefined {
  let fd: number;
  try {
    fd = openNoFollow(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'EACCES' && options.unreadableIsMissing) return undefined;
    if (err instanceof HostError) throw err;
    throw new HostError('storage', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new HostError('unsafe_file', `${path} is not a regular file: remove it and the host makes a new one`);
    const problem = ownershipProblem(path, st, 'file', options.ownedByUs === false ? null : ourUid(), options.secret);
    if (problem) throw new HostError('unsafe_file', problem);
    // A secret file is small: read at most 64 KiB, never a huge planted file.
    const buf = Buffer.alloc(Math.min(st.size, 64 * 1024));
    const n = buf.length === 0 ? 0 : readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Creates a private file (mode 0600) with `content`; false if it exists already (never overwritten, never through a link). */
export function createPrivateFile(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openNoFollow(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    if (err instanceof HostError) throw err;
    throw new HostError('storage', `cannot create ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}
