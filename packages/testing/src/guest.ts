// launchGuest: a command under test becomes a guest the host owns (its own
// memory cgroup where the machine allows it), with a balloon the test can
// inflate and deflate and a close() that leaves nothing behind.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdminClient, startHost, type HostHandle, type StartHostOptions, type VmView } from '@memballoon/host';
import { guestNodeOptions, guestPathEnv } from './defaults.js';
import { TestingError } from './errors.js';

/** Code of the warning emitted when a guest runs without a memory cgroup. */
export const UNBOUNDED_WARNING_CODE = 'MEMBALLOON_UNBOUNDED_GUEST';

/** Where a host's admin API is, and the credential for it. */
export interface HostAddress {
  /** Base URL, e.g. http://127.0.0.1:7450. */
  url: string;
  /** The admin token (undefined when the host runs with --insecure-no-auth). */
  adminToken: string | undefined;
}

/** Options of launchGuest. */
export interface LaunchGuestOptions {
  /** The guest's memory (MiB): its cgroup's hard limit, and what the balloon takes from. */
  memoryMib: number;
  /** The command under test and its arguments; it runs inside the guest, wrapped by the agent. */
  command: readonly string[];
  /** The VM's name (default: `test-` and random hex). */
  name?: string;
  /**
   * A host to use: a running host's URL and admin token, or a HostHandle from
   * startHost(). Default: a host started in this process for this guest alone
   * (pool = memoryMib), closed with the guest.
   */
  host?: HostAddress | HostHandle;
  /** Fail instead of warning when the machine cannot give the guest its own memory cgroup (default false). */
  requireCgroup?: boolean;
  /** How long the start and each balloon() may take before they reject (default 60 s). */
  timeoutMs?: number;
  /** Logger of the in-process host (default: silent). */
  logger?: StartHostOptions['logger'];
}

/** Options of one balloon() call. */
export interface BalloonOptions {
  /** How long to wait for the balloon to settle (default: the guest's timeoutMs). */
  timeoutMs?: number;
}

/** A running guest. Close it (or `await using` it) to power it off and remove what was made for it. */
export interface TestGuest extends AsyncDisposable {
  readonly name: string;
  readonly memoryMib: number;
  /** The host's base URL. */
  readonly url: string;
  /** True when the workload runs in its own memory cgroup (the squeeze is real); false for a plain process tree. */
  readonly bounded: boolean;
  /** The guest's memory cgroup directory (undefined when not bounded). */
  readonly cgroupDir: string | undefined;
  /** Where the workload's stdout and stderr go. */
  readonly logFile: string | undefined;
  /** The agent's process id (the workload is its child). */
  readonly agentPid: number;
  /** The VM as `showvminfo --json` shows it now. */
  info(): Promise<VmView>;
  /**
   * Sets the balloon to `targetMib` and resolves once the guest has reached it
   * (with the VM's view); rejects with TestingError: 'balloon_short' (and the
   * guest's reason) when the guest stops short, 'guest_stopped', 'timeout',
   * or 'host_refused' (e.g. the 90 % rule).
   */
  balloon(targetMib: number, options?: BalloonOptions): Promise<VmView>;
  /** Powers the guest off (its agent deflates, its command gets SIGTERM), unregisters it and closes an in-process host. Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const POLL_MS = 50;

function isHandle(host: HostAddress | HostHandle): host is HostHandle {
  return 'service' in host;
}

function checkOptions(options: LaunchGuestOptions): void {
  if (!Number.isSafeInteger(options.memoryMib) || options.memoryMib < 64) {
    throw new TestingError(
      'invalid_argument',
      `memoryMib must be a whole number of MiB, at least 64 (the agent itself needs some): got ${String(options.memoryMib)}`,
    );
  }
  if (!Array.isArray(options.command) || options.command.length === 0 || options.command.some((a) => typeof a !== 'string')) {
    throw new TestingError('invalid_argument', 'command must be a non-empty array of strings, e.g. [process.execPath, "server.js"]');
  }
}

/** Starts `command` as a guest of `memoryMib` MiB and resolves once its agent is admitted. */
export async function launchGuest(options: LaunchGuestOptions): Promise<TestGuest> {
  checkOptions(options);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const name = options.name ?? `test-${randomBytes(4).toString('hex')}`;
  let own: { handle: HostHandle; dataDir: string } | undefined;
  let address: HostAddress;
  if (options.host === undefined) {
    const dataDir = mkdtempSync(join(tmpdir(), 'memballoon-testing-'));
    try {
      const nodeOptions = guestNodeOptions();
      const handle = await startHost({
        dataDir,
        listenPort: 0,
        poolSizeMib: options.memoryMib,
        ...(options.logger ? { logger: options.logger } : {}),
        // A parent of its own: parallel test files never share cgroups.
        guests: {
          cgroupParent: `memballoon-testing-${process.pid}-${randomBytes(3).toString('hex')}`,
          pathEnv: guestPathEnv(),
          ...(nodeOptions !== undefined ? { nodeOptions } : {}),
          startTimeoutMs: timeoutMs,
        },
      });
      own = { handle, dataDir };
    } catch (err) {
      rmSync(dataDir, { recursive: true, force: true });
      throw TestingError.from(err);
    }
    address = { url: own.handle.url, adminToken: own.handle.adminToken };
  } else {
    address = isHandle(options.host) ? { url: options.host.url, adminToken: options.host.adminToken } : options.host;
  }

  const api = new AdminClient(address.url, address.adminToken);
  let created = false;
  const cleanup = async (): Promise<void> => {
    if (created) await api.unregister(name).catch(() => undefined);
    if (own) {
      await own.handle.close().catch(() => undefined);
      rmSync(own.dataDir, { recursive: true, force: true });
    }
  };
  try {
    const host = await api.host();
    const bounded = host.guests === 'cgroup';
    if (!bounded) {
      const why = `memballoon: guest '${name}' runs as a plain process tree, not in a memory cgroup (${host.guestsDetail ?? 'this host does not start guests in cgroups'}): the balloon takes memory from the guest's budget, but the workload is not bounded by the kernel`;
      if (options.requireCgroup) throw new TestingError('invalid_argument', why);
      process.emitWarning(why, { code: UNBOUNDED_WARNING_CODE });
    }
    await api.create(name, options.memoryMib);
    created = true;
    const started = await api.startvm(name, { command: [...options.command], type: 'headless' });
    const view =
      started.state === 'running' ? started : await waitFor(api, name, timeoutMs, 'the guest to start', (v) => (v.state === 'running' ? v : undefined), false);
    return new Guest(api, name, options.memoryMib, address.url, bounded, view, timeoutMs, cleanup);
  } catch (err) {
    await cleanup();
    throw TestingError.from(err);
  }
}

class Guest implements TestGuest {
  readonly cgroupDir: string | undefined;
  readonly logFile: string | undefined;
  readonly agentPid: number;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly api: AdminClient,
    readonly name: string,
    readonly memoryMib: number,
    readonly url: string,
    readonly bounded: boolean,
    view: VmView,
    private readonly timeoutMs: number,
    private readonly cleanup: () => Promise<void>,
  ) {
    this.cgroupDir = view.managed?.cgroup ?? undefined;
    this.logFile = view.managed?.logFile;
    this.agentPid = view.managed?.agentPid ?? view.pid ?? -1;
  }

  info(): Promise<VmView> {
    return this.api.vm(this.name).catch((err: unknown) => {
      throw TestingError.from(err);
    });
  }

  async balloon(targetMib: number, options: BalloonOptions = {}): Promise<VmView> {
    if (!Number.isSafeInteger(targetMib) || targetMib < 0)
      throw new TestingError('invalid_argument', `targetMib must be a whole number of MiB ≥ 0: got ${String(targetMib)}`);
    if (this.closing) throw new TestingError('guest_stopped', `guest '${this.name}' is closed`);
    try {
      await this.api.setBalloon(this.name, targetMib);
      return await this.settle(targetMib, options);
    } catch (err) {
      throw TestingError.from(err);
    }
  }

  private settle(targetMib: number, options: BalloonOptions): Promise<VmView> {
    return waitFor(this.api, this.name, options.timeoutMs ?? this.timeoutMs, `the balloon to reach ${targetMib} MiB`, (v) => {
      const b = v.balloon;
      if (!b || b.targetMib !== targetMib) return undefined;
      if (b.actualMib === targetMib && b.state !== 'inflating' && b.state !== 'deflating') return v;
      if (b.state === 'short') {
        throw new TestingError('balloon_short', `guest '${this.name}' stopped its balloon at ${b.actualMib} of ${targetMib} MiB: ${b.reason}`, {
          reason: b.reason,
        });
      }
      return undefined;
    });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const v = await this.api.vm(this.name).catch(() => undefined);
      if (v !== undefined && v.state !== 'poweroff') await this.api.powerAction(this.name, 'poweroff').catch(() => undefined);
      await this.cleanup();
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Polls showvminfo until `done` returns a value, the VM stops running, or the deadline passes. */
async function waitFor(
  api: AdminClient,
  name: string,
  timeoutMs: number,
  what: string,
  done: (v: VmView) => VmView | undefined,
  mustRun = true,
): Promise<VmView> {
  const deadline = Date.now() + timeoutMs;
  let last: VmView | undefined;
  for (;;) {
    last = await api.vm(name);
    const hit = done(last);
    if (hit) return hit;
    if (mustRun && last.state !== 'running') throw new TestingError('guest_stopped', `guest '${name}' stopped while waiting for ${what}`);
    if (Date.now() >= deadline) {
      const b = last.balloon;
      throw new TestingError(
        'timeout',
        `waited ${timeoutMs} ms for ${what} of guest '${name}'${b ? ` (balloon at ${b.actualMib} of ${b.targetMib} MiB, ${b.state})` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
