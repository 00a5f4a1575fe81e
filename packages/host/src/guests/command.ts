// Pure checks of what startvm is asked to run and as whom: the command line
// (found on PATH before anything is created) and the guest user (/etc/passwd).
import { accessSync, constants, statSync } from 'node:fs';
import { HostError } from '../errors.js';

/** Most arguments a startvm command line may have. */
export const MAX_COMMAND_ARGS = 256;
/** Most characters of one argument. */
export const MAX_ARG_CHARS = 4096;

/** Checks a startvm command line: a non-empty array of strings without NUL bytes. */
export function checkCommand(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0)
    throw new HostError('invalid_argument', 'startvm needs a command to run (balloonctl startvm NAME -- COMMAND [ARGS…])');
  if (value.length > MAX_COMMAND_ARGS) throw new HostError('invalid_argument', `the command has more than ${MAX_COMMAND_ARGS} arguments`);
  for (const arg of value) {
    if (typeof arg !== 'string') throw new HostError('invalid_argument', 'every command argument must be a string');
    if (arg.includes('\0')) throw new HostError('invalid_argument', 'a command argument holds a NUL byte');
    if (arg.length > MAX_ARG_CHARS) throw new HostError('invalid_argument', `a command argument is longer than ${MAX_ARG_CHARS} characters`);
  }
  if (value[0] === '') throw new HostError('invalid_argument', 'the command is empty');
  return value as string[];
}

/**
 * The executable a command names, as execvp finds it: a name with `/` as it
 * is, else the first executable file on PATH. invalid_argument with one clear
 * line if there is none, so that startvm fails before it creates anything.
 */
export function resolveCommand(command: string, pathEnv: string): string {
  const isExecutableFile = (p: string) => {
    try {
      if (!statSync(p).isFile()) return false;
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (command.includes('/')) {
    if (isExecutableFile(command)) return command;
    throw new HostError('invalid_argument', `startvm: '${command}' is not an executable file`);
  }
  for (const dir of pathEnv.split(':')) {
    const candidate = `${dir === '' ? '.' : dir}/${command}`;
    if (isExecutableFile(candidate)) return candidate;
  }
  throw new HostError('invalid_argument', `startvm: command '${command}' not found on PATH (${pathEnv})`);
}

/** A user guests run as. */
export interface GuestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** Finds a user (by name or numeric id) in /etc/passwd text; invalid_argument if unknown. */
export function findUser(passwd: string, user: string): GuestUser {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length < 7) continue;
    if (f[0] === user || (/^\d+$/.test(user) && f[2] === user)) return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
  }
  throw new HostError('invalid_argument', `no such user: '${user}'`);
}
