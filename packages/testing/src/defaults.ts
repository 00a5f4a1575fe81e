// The one place the toolkit reads the environment: the PATH and NODE_OPTIONS
// the guests it starts inherit (a checkout running from source passes its
// export condition on to the agent this way).

/** PATH for the guests' commands. */
export function guestPathEnv(): string {
  return process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
}

/** NODE_OPTIONS for the agents the in-process host starts, if any. */
export function guestNodeOptions(): string | undefined {
  return process.env.NODE_OPTIONS || undefined;
}
