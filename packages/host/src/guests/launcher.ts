// The launcher: guests the host owns. startvm creates the VM's memory cgroup
// (limit = the VM's memory), starts balloon-agent wrapping the command inside
// it, and waits for its Hello; poweroff stops it and removes the cgroup; a
// host restarted after kill -9 finds its guests again from their records.
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, constants, existsSync, fchownSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { BYTES_PER_MIB } from '@memballoon/protocol';
import { generateToken, hashToken, tokenMatches } from '../auth/tokens.js';
import {
  CgroupError,
  memoryCgroupOfProc,
  openMemoryHierarchy,
  planLimits,
  type CgroupFs,
  type CgroupTree,
  type KernelMemoryCgroup,
  type MemoryCgroup,
} from '../cgroup/index.js';
import { HostError } from '../errors.js';
import { checkCommand, findUser, resolveCommand, type GuestUser } from './command.js';
import { toHostError } from './errors.js';
import { isSameProcess, procCgroupText, procStartTicks, signal } from './proc.js';
import { GuestStateDir, type GuestRecord } from './state.js';
import type { GuestHostService, GuestsCollaborator, GuestsHostView, ManagedGuestView } from './views.js';

/** Least room under the pool cgroup a new guest starts in (its agent and workload must load); the hand-off raises it to the VM's memory after admission. */
const MIN_STARTING_LIMIT_MIB = 128;
/** Default grace between SIGTERM and SIGKILL at poweroff. */
export const DEFAULT_POWEROFF_GRACE_MS = 10_000;

/**
 * The pre-exec step: the shell writes its own pid into the VM's cgroup.procs
 * and then execs the agent, so that the agent and everything it starts are
 * charged to the VM from their first page.
 */
const SHIM = 'echo $$ > "$1" || exit 125; shift; exec "$@"';

/** Options of the launcher. */
export interface LauncherOptions {
  dataDir: string;
  logger: Logger;
  /** The host's parent cgroup, relative to the memory hierarchy (`--cgroup-parent`). */
  cgroupParent: string;
  /** Make the parent's hard limit the pool (`--pool-cgroup`). */
  poolCgroup: boolean;
  poolSizeMib: number;
  /** How the agent is run: e.g. [node, .../balloon-agent.mjs]. */
  agentCommand: readonly string[];
  /** PATH given to guests and used to find their command. */
  pathEnv: string;
  /** NODE_OPTIONS for the agent (a source checkout runs it with --conditions). */
  nodeOptions?: string;
  /** Where the agents connect (the host's own URL). */
  hostUrl: () => string;
  /**
   * The certificate the agents trust (the host's, with TLS), PEM text. It
   * goes in the agent's environment (MEMBALLOON_CA_PEM), not as a file: a
   * file in the 0700 data directory is out of reach of a guest started
   * with --user, and a copy elsewhere would be one more file to keep right.
   */
  caPem?: string;
  /** Run every guest as this user (`--guest-user`); a startvm may not name another. */
  guestUser?: string;
  /** Refuse startvm unless it comes over loopback (`--no-remote-startvm`). */
  remoteStartvm: boolean;
  /** SIGTERM → SIGKILL grace at poweroff (default DEFAULT_POWEROFF_GRACE_MS). */
  poweroffGraceMs?: number;
  /** How long startvm waits for the agent's Hello (default 60 s). */
  startTimeoutMs?: number;
  /** Plain process trees even where cgroups work (tests of the fallback). */
  forceProcessMode?: boolean;
  /** The cgroup file system (tests). */
  cgroupFs?: CgroupFs;
  /**
   * Where modifyvm --cgroup is noted (the registry): an adopted-kind guest
   * record is acted on only when it names the cgroup noted here for its VM.
   */
  adoptions: AdoptionSettings;
}

/** The registry's word on each VM's adopted cgroup (Registry implements it). */
export interface AdoptionSettings {
  /** The adopted cgroup directory of a VM: null for none, undefined when the VM is not registered. */
  adoptedCgroup(name: string): string | null | undefined;
  /** Notes (null: clears) a VM's adopted cgroup. */
  setAdoptedCgroup(name: string, cgroupDir: string | null): void;
}

/** What startvm is asked. */
export interface StartRequest {
  command: unknown;
  type?: unknown;
  user?: unknown;
  /** Whether the request came over loopback (the router knows). */
  fromLoopback: boolean;
}

interface Guest {
  record: GuestRecord;
  cgroup: KernelMemoryCgroup | null;
  child?: ChildProcess;
  /** Resolves once the agent process has exited. */
  exited: Promise<void>;
  /** Set once the guest is being stopped; resolves when nothing of it is left. */
  stopping?: Promise<void>;
  /** When remaining processes get SIGKILL. */
  killAtMs?: number;
  poll?: NodeJS.Timeout;
  /**
   * An adopted cgroup whose limit is still the one the hand-off left (its VM
   * ran and its own limit is not back yet): the pool keeps counting its VM's
   * memory until then (holdsLimit).
   */
  limitHeld?: boolean;
}

/** The host's managed guests (the service's `guests` collaborator). */
export class GuestLauncher implements GuestsCollaborator {
  private readonly guests = new Map<string, Guest>();
  /** VMs whose startvm is between its checks and its spawn: a second startvm must not race it. */
  private readonly starting = new Set<string>();
  private readonly state: GuestStateDir;
  private readonly log: Logger;
  private readonly graceMs: number;
  private service: GuestHostService | undefined;
  private limitsTail: Promise<unknown> = Promise.resolve();
  /** Adopted cgroups' limits being given back (awaited by idle()). */
  private readonly restoring = new Set<Promise<void>>();
  private closed = false;

  private constructor(
    private readonly options: LauncherOptions,
    /** The host's subtree of the memory hierarchy; undefined in process mode. */
    readonly tree: CgroupTree | undefined,
    private readonly modeDetail: string,
  ) {
    this.state = new GuestStateDir(options.dataDir);
    this.log = options.logger.child({ component: 'guests' });
    this.graceMs = options.poweroffGraceMs ?? DEFAULT_POWEROFF_GRACE_MS;
  }

  /** Detects cgroups, makes the parent (and its pool limit), and finds the guests a previous host left running. */
  static async open(options: LauncherOptions): Promise<GuestLauncher> {
    const log = options.logger.child({ component: 'guests' });
    let tree: CgroupTree | undefined;
    let detail: string;
    if (options.forceProcessMode) {
      detail = 'cgroups turned off for this host';
    } else {
      const opened = await openMemoryHierarchy(options.cgroupParent, options.cgroupFs);
      detail = opened.support.reason;
      if (opened.tree) {
        // The parent is made at the first startvm (or now, for --pool-cgroup):
        // a host that never starts a guest leaves the hierarchy untouched.
        try {
          await access(opened.tree.root, constants.W_OK);
          tree = opened.tree;
        } catch {
          detail = `${opened.support.reason}, but the host may not create cgroups in it (not root?)`;
        }
      }
    }
    if (options.poolCgroup && !tree) throw new HostError('invalid_argument', `--pool-cgroup needs memory cgroups: ${detail}`);
    const launcher = new GuestLauncher(options, tree, detail);
    log.info(
      { guests: tree ? 'cgroup' : 'process', detail, parent: tree?.parentDir },
      tree ? 'guests run in memory cgroups' : 'guests run as plain process trees',
    );
    await launcher.recover();
    if (options.poolCgroup) await launcher.setLimits(new Map(), options.poolSizeMib * BYTES_PER_MIB);
    return launcher;
  }

  /** Connects the launcher to the service it serves (made after the launcher). */
  attach(service: GuestHostService): void {
    this.service = service;
  }

  private svc(): GuestHostService {
    if (!this.service) throw new HostError('internal', 'the guest launcher is not attached to the host service');
    return this.service;
  }

  // ---- collaborator (views, credentials, cgroups) --------------------------

  /** The memory cgroup of a running managed VM (started or adopted), else null. */
  cgroupOf(name: string): MemoryCgroup | null {
    if (!this.service?.isRunning(name)) return null;
    return this.guests.get(name)?.cgroup ?? null;
  }

  /** Whether startvm is starting this VM's guest (spawned, not yet admitted). */
  isStarting(name: string): boolean {
    return this.starting.has(name);
  }

  /**
   * Whether this VM's cgroup still carries a limit the host set while the VM
   * is not running: a startvm guest's cgroup not yet removed (an agent being
   * stopped, or one that may reconnect), or an adopted cgroup whose own limit
   * is not back yet (from its session's end, or a host restart while it ran,
   * until restoreLimit). The pool counts the VM's memory for it meanwhile.
   */
  holdsLimit(name: string): boolean {
    const g = this.guests.get(name);
    if (!g?.cgroup) return false;
    return g.record.kind === 'startvm' || g.limitHeld === true;
  }

  /** unregistervm: lets an adopted cgroup go; refuses while the host runs or starts the VM's guest. */
  forget(name: string): void {
    const g = this.guests.get(name);
    if (this.starting.has(name) || g?.record.kind === 'startvm')
      throw new HostError('vm_running', `VM '${name}' is running: unregistervm needs the VM powered off (controlvm ${name} poweroff)`);
    if (g) {
      this.guests.delete(name);
      this.state.remove(name);
      this.track(this.restoreLimit(g, 'unregistervm'));
    }
  }

  /**
   * A VM's session ended. An adopted cgroup gets back the limit it had
   * before adoption once the hand-off has written its last one, unless the
   * agent is back by then (the hand-off owns the limit again). A startvm
   * guest's cgroup goes with its agent (see stop()).
   */
  sessionEnded(name: string, handOffStopped: Promise<void>): void {
    const g = this.guests.get(name);
    if (g?.record.kind !== 'adopted') return;
    // The hand-off's last limit stays until the own one is back: counted until then.
    g.limitHeld = true;
    this.track(
      handOffStopped.then(() => {
        if (this.guests.get(name) === g && !this.service?.isRunning(name)) return this.restoreLimit(g, 'powered off');
      }),
    );
  }

  /** Resolves once no adopted cgroup's limit is being given back (the host awaits it when it stops). */
  async idle(): Promise<void> {
    while (this.restoring.size > 0) await Promise.all([...this.restoring]);
  }

  private track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => this.log.warn({ err }, 'giving an adopted cgroup its limit back failed'));
    this.restoring.add(tracked);
    void tracked.finally(() => this.restoring.delete(tracked));
  }

  /**
   * Writes back an adopted cgroup's limit from before the adoption (kept in
   * its record, so a restarted host does it too). Never removes the cgroup.
   * A limit the kernel refuses (usage above it) is logged, not forced.
   */
  private async restoreLimit(g: Guest, why: string): Promise<void> {
    const before = g.record.limitBeforeAdoptionBytes;
    if (g.record.kind !== 'adopted' || !g.cgroup) return;
    // A record with no own limit noted: nothing to give back, and nothing the pool can wait for.
    if (before === undefined) return this.limitGivenBack(g);
    const now = await g.cgroup.limitBytes();
    if (now === before) return this.limitGivenBack(g);
    try {
      await g.cgroup.setLimitBytes(before);
      this.limitGivenBack(g);
      this.log.info({ vm: g.record.name, cgroup: g.cgroup.dir, limitBytes: before, fromBytes: now, why }, 'adopted cgroup: its own limit is back');
    } catch (err) {
      this.log.warn(
        { vm: g.record.name, cgroup: g.cgroup.dir, limitBytes: before, err: (err as Error).message, why },
        'adopted cgroup: could not give its limit back',
      );
    }
  }

  /** An adopted cgroup has its own limit again: the VM's memory it was counted for is room under the pool again. */
  private limitGivenBack(g: Guest): void {
    if (!g.limitHeld) return;
    g.limitHeld = false;
    this.service?.guestGone(g.record.name);
  }

  /** Whether `credential` is the launch token of this VM's agent. */
  acceptsCredential(name: string, credential: string): boolean {
    const hash = this.guests.get(name)?.record.launchTokenHash;
    return hash !== undefined && credential !== '' && tokenMatches(credential, hash);
  }

  /** showhostinfo's guests and reclaim modes. */
  hostView(): GuestsHostView {
    return {
      guests: this.tree ? 'cgroup' : 'process',
      guestsDetail: this.modeDetail,
      reclaim: this.tree ? 'physical' : 'budget',
      ...(this.tree ? { cgroupParent: this.tree.parentDir } : {}),
      poolCgroup: this.options.poolCgroup,
      remoteStartvm: this.options.remoteStartvm,
    };
  }

  /** showvminfo's managed-guest fields. */
  vmView(name: string): ManagedGuestView | undefined {
    const g = this.guests.get(name);
    if (!g) return undefined;
    const r = g.record;
    return {
      managedBy: r.kind,
      cgroup: r.cgroupDir,
      ...(r.logFile !== undefined ? { logFile: r.logFile } : {}),
      ...(r.agentPid !== undefined ? { agentPid: r.agentPid } : {}),
      ...(r.command !== undefined ? { command: r.command } : {}),
      ...(r.user !== undefined ? { user: r.user } : {}),
    };
  }

  // ---- limits --------------------------------------------------------------

  /**
   * Sets the limits of VM cgroups (and the parent's, if given) in the
   * planner's order, one plan at a time; over_parent changes nothing.
   * `fresh`: cgroups just made, whose kernel default (no limit) is not counted.
   */
  setLimits(wanted: ReadonlyMap<string, number | null>, parentBytes?: number | null, fresh: ReadonlySet<string> = new Set()): Promise<void> {
    const run = this.limitsTail.then(async () => {
      const tree = this.tree;
      if (!tree) throw new CgroupError('unavailable', 'this host runs guests without cgroups');
      const parent = await tree.ensureParent();
      const children = new Map<string, number | null>();
      for (const name of await tree.children()) {
        if (fresh.has(name)) continue;
        children.set(
          name,
          await tree
            .open(`${tree.parentDir}/${name}`)
            .limitBytes()
            .catch(() => null),
        );
      }
      const steps = planLimits({ parentBytes: await parent.limitBytes(), children }, { parentBytes, children: wanted });
      for (const step of steps) {
        await (step.name === null ? parent : tree.open(tree.childDir(step.name))).setLimitBytes(step.toBytes);
      }
    });
    this.limitsTail = run.catch(() => undefined);
    return run;
  }

  /**
   * The limit a new VM cgroup starts with: its memory, or under a pool cgroup
   * what the other guests' limits leave of the pool when that is less. The
   * figure is the service's (startLimitRoomMib: the hand-off's counted sum
   * of limits, the one owner of that rule), not a reading of the kernel's
   * files: a raise is counted before its write, so a startvm that begins
   * while one is being written sees its room taken. The host reclaims the
   * rest when the agent says Hello (balloons of the others handed off to
   * their limits), and the hand-off then raises this guest's limit to its
   * memory, so the children never sum above the pool.
   */
  private startingLimitBytes(name: string, memoryBytes: number): number {
    if (!this.tree || !this.options.poolCgroup) return memoryBytes;
    const roomMib = Math.max(0, Math.floor(this.svc().startLimitRoomMib(name)));
    if (roomMib < MIN_STARTING_LIMIT_MIB) {
      throw new HostError(
        'pool_exhausted',
        `VM '${name}' cannot start: the other guests' cgroup limits leave ${roomMib} MiB of the ${this.options.poolSizeMib} MiB pool cgroup, below the ${MIN_STARTING_LIMIT_MIB} MiB its agent needs to start; make room first (a balloon on another VM, which the host hands off to its limit, or a poweroff)`,
      );
    }
    return Math.min(memoryBytes, roomMib * BYTES_PER_MIB);
  }

  // ---- startvm ---------------------------------------------------------------

  /** startvm: starts the VM's agent wrapping `command` in the VM's cgroup; resolves once the agent is admitted. */
  async startvm(name: string, req: StartRequest): Promise<void> {
    if (this.closed) throw new HostError('not_running', 'the host is shutting down');
    if (!this.options.remoteStartvm && !req.fromLoopback) {
      throw new HostError('unauthorized', 'startvm over the network is turned off on this host (--no-remote-startvm): run balloonctl on the host itself');
    }
    const vm = this.svc().vmView(name);
    const existing = this.guests.get(name);
    if (existing?.record.kind === 'adopted')
      throw new HostError(
        'invalid_argument',
        `VM '${name}' runs in the adopted cgroup ${existing.record.cgroupDir}, started by another tool (modifyvm ${name} --cgroup none first)`,
      );
    if (vm.state === 'running' || existing || this.starting.has(name)) throw new HostError('vm_running', `VM '${name}' is already running`);
    if (req.type !== undefined && req.type !== 'headless')
      throw new HostError('invalid_argument', `startvm --type takes only 'headless' (got '${String(req.type)}')`);
    const command = checkCommand(req.command);
    const user = this.userOf(req.user);
    // Found before anything is made: a missing command leaves nothing behind.
    resolveCommand(command[0]!, this.options.pathEnv);
    // A start the pool can never fund is refused now, with the figures,
    // instead of an agent that retries its refused Hello until the timeout.
    this.svc().assertCanStart(name);
    this.starting.add(name);
    try {
      await this.launch(name, vm.memoryMib, command, user);
    } finally {
      this.starting.delete(name);
      this.svc().startEnded(name);
    }
  }

  private async launch(name: string, memoryMib: number, command: string[], user: GuestUser | undefined): Promise<void> {
    let cgroup: KernelMemoryCgroup | null = null;
    const cleanupCgroup = async () => {
      if (cgroup && this.tree) await this.tree.remove(cgroup.dir).catch((err) => this.log.warn({ err, vm: name }, 'could not remove the cgroup'));
    };
    try {
      if (this.tree) {
        cgroup = await this.makeCgroup(name);
        await this.setLimits(new Map([[name, this.startingLimitBytes(name, memoryMib * BYTES_PER_MIB)]]), undefined, new Set([name]));
        // An unprivileged guest's shim must be able to move itself in: only
        // cgroup.procs is given to the user (never the limit files).
        if (user) for (const f of this.tree.version === 1 ? ['cgroup.procs', 'tasks'] : ['cgroup.procs']) chownSync(join(cgroup.dir, f), user.uid, user.gid);
      }
    } catch (err) {
      await cleanupCgroup();
      throw toHostError(err);
    }

    const token = generateToken();
    const logsDir = join(this.options.dataDir, 'logs');
    const logFile = join(logsDir, `${name}.log`);
    let child: ChildProcess;
    try {
      mkdirSync(logsDir, { recursive: true, mode: 0o700 });
      const fd = openGuestLog(logsDir, logFile);
      try {
        if (user) fchownSync(fd, user.uid, user.gid);
        const agentArgv = [...this.options.agentCommand, '--host', this.options.hostUrl(), '--name', name, '--memory-mib', String(memoryMib), '--', ...command];
        const argv = cgroup ? ['/bin/sh', '-c', SHIM, 'memballoon-shim', `${cgroup.dir}/cgroup.procs`, ...agentArgv] : agentArgv;
        child = spawn(argv[0]!, argv.slice(1), {
          // Its own process group: a terminal's Ctrl-C to the host does not
          // reach the guests, and process mode can signal the whole tree.
          detached: true,
          stdio: ['ignore', fd, fd],
          // A clean environment: nothing of the host's (no admin token) leaks
          // into the guest; the VM's token goes by environment, never argv.
          env: {
            PATH: this.options.pathEnv,
            HOME: user?.home ?? userInfo().homedir,
            MEMBALLOON_TOKEN: token,
            ...(this.options.caPem !== undefined ? { MEMBALLOON_CA_PEM: this.options.caPem } : {}),
            ...(this.options.nodeOptions ? { NODE_OPTIONS: this.options.nodeOptions } : {}),
          },
          ...(user ? { uid: user.uid, gid: user.gid, cwd: existsSync(user.home) ? user.home : '/' } : {}),
        });
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      await cleanupCgroup();
      throw toHostError(err);
    }
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const pid = child.pid;
    const record: GuestRecord = {
      name,
      kind: 'startvm',
      cgroupDir: cgroup?.dir ?? null,
      ...(pid !== undefined ? { agentPid: pid, agentStartTicks: procStartTicks(pid) ?? 0 } : {}),
      launchTokenHash: hashToken(token),
      logFile,
      command,
      ...(user ? { user: user.name } : {}),
      startedAtMs: Date.now(),
    };
    const guest: Guest = { record, cgroup, child, exited };
    this.guests.set(name, guest);
    if (pid !== undefined) this.state.save(record);
    void exited.then(() => this.onAgentExit(guest, `the agent exited (${child.exitCode ?? child.signalCode})`));
    this.log.info({ vm: name, pid, cgroup: record.cgroupDir, logFile, user: user?.name }, 'startvm: guest started');

    try {
      await this.untilAdmitted(name, guest, spawnError);
    } catch (err) {
      await this.stop(guest, 'startvm failed', Date.now());
      throw err;
    }
  }

  private userOf(requested: unknown): GuestUser | undefined {
    if (requested !== undefined && typeof requested !== 'string') throw new HostError('invalid_argument', 'user must be a user name');
    const forced = this.options.guestUser;
    if (forced !== undefined && requested !== undefined && requested !== forced) {
      throw new HostError('invalid_argument', `this host runs every guest as '${forced}' (--guest-user): startvm --user '${requested}' is refused`);
    }
    const name = requested ?? forced;
    if (name === undefined) return undefined;
    return findUser(readFileSync('/etc/passwd', 'utf8'), name);
  }

  private async makeCgroup(name: string): Promise<KernelMemoryCgroup> {
    const tree = this.tree!;
    await tree.ensureParent();
    try {
      return await tree.createChild(name);
    } catch (err) {
      const e = CgroupError.from(err);
      if (e.code !== 'already_exists') throw e;
      // Left by a guest that is gone: reuse only if empty.
      const stale = tree.open(tree.childDir(name));
      if ((await stale.pids()).length > 0)
        throw new HostError('vm_running', `the cgroup ${stale.dir} of VM '${name}' still has processes: it is not ours to reuse`);
      await tree.remove(stale.dir);
      return tree.createChild(name);
    }
  }

  /** Resolves once the VM is running; rejects with the agent's last words if it exits first. */
  private untilAdmitted(name: string, guest: Guest, spawnError: Promise<Error>): Promise<void> {
    const service = this.svc();
    const timeoutMs = this.options.startTimeoutMs ?? 60_000;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        unsubscribe();
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      // A refusal the pool gives its Hello now (another start took the room
      // since startvm checked) fails the start at once rather than at the timeout.
      const refusedBefore = service.poolRefusal(name);
      const check = () => {
        if (service.isRunning(name)) return finish();
        const refused = service.poolRefusal(name);
        if (refused !== undefined && refused !== refusedBefore) finish(new HostError('pool_exhausted', refused.message));
      };
      const unsubscribe = service.subscribe(check);
      const timer = setTimeout(
        () =>
          finish(
            new HostError(
              'timeout',
              `VM '${name}': its agent was not admitted within ${Math.round(timeoutMs / 1000)} s: ${lastLine(guest.record.logFile)} (see ${guest.record.logFile})`,
            ),
          ),
        timeoutMs,
      );
      void spawnError.then((err) => finish(new HostError('internal', `VM '${name}': could not start its agent: ${err.message}`)));
      void guest.exited.then(() => {
        const code = guest.child?.exitCode;
        finish(
          new HostError(
            'internal',
            `VM '${name}' stopped before its agent connected (exit ${code ?? guest.child?.signalCode}): ${lastLine(guest.record.logFile)}`,
          ),
        );
      });
      check();
    });
  }

  // ---- poweroff ----------------------------------------------------------------

  /**
   * controlvm poweroff: SIGTERM to the agent (it deflates, says Goodbye and
   * passes the signal to the workload), SIGKILL to whatever is left after the
   * grace period, cgroup removed. `gentle` (acpipowerbutton): SIGTERM only.
   */
  async poweroff(name: string, gentle = false): Promise<void> {
    const g = this.guests.get(name);
    if (g?.record.kind !== 'startvm') {
      if (this.svc().vmView(name).state !== 'running') throw new HostError('not_running', `VM '${name}' is not running`);
      throw new HostError(
        'not_running',
        g
          ? `VM '${name}' runs in an adopted cgroup: stop it with the tool that started it`
          : `VM '${name}' was not started by this host (startvm): stop its agent where it runs`,
      );
    }
    const pid = g.record.agentPid;
    if (pid !== undefined) signal(pid, 'SIGTERM');
    this.log.info({ vm: name, gentle }, gentle ? 'acpipowerbutton: SIGTERM to the agent' : 'poweroff: SIGTERM to the agent');
    if (gentle) return;
    g.killAtMs = Math.min(g.killAtMs ?? Infinity, Date.now() + this.graceMs);
    await this.stop(g, 'poweroff', g.killAtMs);
  }

  private onAgentExit(g: Guest, why: string): void {
    if (this.guests.get(g.record.name) !== g) return;
    this.log.info({ vm: g.record.name, why }, 'guest agent gone: stopping the rest of the guest');
    void this.stop(g, why, Date.now() + this.graceMs);
  }

  /** Stops every process of the guest (SIGTERM, SIGKILL at `killAtMs`), removes its cgroup and record. */
  private stop(g: Guest, why: string, killAtMs: number): Promise<void> {
    g.killAtMs = Math.min(g.killAtMs ?? Infinity, killAtMs);
    g.stopping ??= (async () => {
      const name = g.record.name;
      // While the agent lives it deflates, says Goodbye and passes SIGTERM
      // to the workload: a second signal would cut its deflate short.
      let agentGone = false;
      void g.exited.then(() => (agentGone = true));
      while (!agentGone && Date.now() < (g.killAtMs ?? 0)) await pause(25);
      // What outlives the agent (a workload's own children, or all of it
      // when the agent was killed) gets SIGTERM here, SIGKILL at killAtMs.
      await this.signalAll(g, 'SIGTERM');
      let killed = false;
      const hardDeadline = () => (g.killAtMs ?? Date.now()) + 30_000;
      for (;;) {
        if (await this.isEmpty(g)) break;
        if (!killed && Date.now() >= (g.killAtMs ?? 0)) {
          killed = true;
          this.log.warn({ vm: name }, 'grace period over: SIGKILL to every process of the guest');
        }
        if (killed) await this.signalAll(g, 'SIGKILL');
        if (Date.now() > hardDeadline()) {
          this.log.error({ vm: name }, 'processes of the guest survive SIGKILL: leaving its cgroup');
          break;
        }
        await pause(25);
      }
      if (g.child) await g.exited;
      if (g.cgroup && this.tree && g.record.kind === 'startvm') {
        // The last exits may lag behind cgroup.procs for a moment (EBUSY).
        for (let tries = 0; ; tries++) {
          try {
            await this.tree.remove(g.cgroup.dir);
            break;
          } catch (err) {
            if (tries >= 200) {
              this.log.error({ err, vm: name }, 'could not remove the cgroup');
              break;
            }
            await pause(25);
          }
        }
      }
      this.state.remove(name);
      if (this.guests.get(name) === g) {
        this.guests.delete(name);
        this.service?.guestGone(name);
      }
      this.log.info({ vm: name, why }, 'guest powered off');
    })();
    return g.stopping;
  }

  private async signalAll(g: Guest, sig: NodeJS.Signals): Promise<void> {
    if (g.cgroup) {
      for (const pid of await g.cgroup.pids().catch(() => [])) signal(pid, sig);
    } else if (ownsGroup(g.record)) {
      // Process mode: the agent leads its own process group.
      signal(-g.record.agentPid!, sig);
    }
  }

  private async isEmpty(g: Guest): Promise<boolean> {
    if (g.cgroup) return (await g.cgroup.pids().catch(() => [])).length === 0;
    return !ownsGroup(g.record) || !signal(-g.record.agentPid!, 0);
  }

  // ---- adoption ------------------------------------------------------------

  /** modifyvm --cgroup PATH (admin only, VM powered off): the VM's guest lives in an existing cgroup; null lets it go. */
  async adopt(name: string, path: string | null): Promise<void> {
    const vm = this.svc().vmView(name);
    const existing = this.guests.get(name);
    if (vm.state === 'running' || existing?.record.kind === 'startvm')
      throw new HostError('vm_running', `VM '${name}' is running: modifyvm --cgroup needs the VM powered off`);
    if (path === null) {
      this.options.adoptions.setAdoptedCgroup(name, null);
      if (existing) {
        this.guests.delete(name);
        await this.restoreLimit(existing, 'modifyvm --cgroup none').catch((err: unknown) =>
          this.log.warn({ err, vm: name }, 'could not read the adopted cgroup'),
        );
      }
      this.state.remove(name);
      return;
    }
    if (!this.tree) throw new HostError('invalid_argument', `modifyvm --cgroup needs memory cgroups: ${this.modeDetail}`);
    let cgroup: KernelMemoryCgroup;
    try {
      cgroup = await this.tree.adopt(path);
    } catch (err) {
      throw toHostError(err);
    }
    if (cgroup.dir === this.tree.parentDir || cgroup.dir.startsWith(`${this.tree.parentDir}/`)) {
      throw new HostError('invalid_argument', `the cgroup ${cgroup.dir} is inside the host's own parent: startvm makes those`);
    }
    // A hand-off lowers the adopted cgroup's limit: on the host's own cgroup,
    // or an ancestor of it or of the pool cgroup, it would squeeze the host
    // and every guest.
    const ownPath = memoryCgroupOfProc(procCgroupText(process.pid), this.tree.version);
    for (const [what, dir] of [
      ['the host itself', ownPath === undefined ? undefined : `${this.tree.root}${ownPath === '/' ? '' : ownPath}`],
      ["the host's parent of guests", this.tree.parentDir],
    ] as const) {
      if (dir !== undefined && (dir === cgroup.dir || dir.startsWith(`${cgroup.dir}/`))) {
        throw new HostError('invalid_argument', `the cgroup ${cgroup.dir} holds ${what} (${dir}): adopt a cgroup of the guest's own`);
      }
    }
    for (const [other, g] of this.guests) {
      if (other !== name && g.cgroup?.dir === cgroup.dir) throw new HostError('already_exists', `the cgroup ${cgroup.dir} already belongs to VM '${other}'`);
    }
    // What the cgroup had is what it gets back at every power-off: the hand-off lowers and raises it while the VM runs.
    let limitBeforeAdoptionBytes: number | null;
    try {
      limitBeforeAdoptionBytes =
        existing?.record.cgroupDir === cgroup.dir && existing.record.limitBeforeAdoptionBytes !== undefined
          ? existing.record.limitBeforeAdoptionBytes
          : await cgroup.limitBytes();
    } catch (err) {
      throw toHostError(err);
    }
    if (existing && existing.record.cgroupDir !== cgroup.dir) await this.restoreLimit(existing, 'adopted another cgroup').catch(() => undefined);
    const record: GuestRecord = { name, kind: 'adopted', cgroupDir: cgroup.dir, limitBeforeAdoptionBytes };
    // The registry first: a record is acted on only where the registry agrees with it.
    const notedBefore = this.options.adoptions.adoptedCgroup(name) ?? null;
    this.options.adoptions.setAdoptedCgroup(name, cgroup.dir);
    try {
      this.state.save(record);
    } catch (err) {
      this.options.adoptions.setAdoptedCgroup(name, notedBefore);
      throw err;
    }
    this.guests.set(name, { record, cgroup, exited: Promise.resolve() });
    this.log.info({ vm: name, cgroup: cgroup.dir }, 'cgroup adopted');
  }

  // ---- restart -------------------------------------------------------------

  /** After a restart: re-adopts guests whose agent still runs, stops the rest, removes cgroups no guest uses. */
  private async recover(): Promise<void> {
    const records = this.state.loadAll((file, err) => this.log.warn({ file, err }, 'unreadable guest record: ignored'));
    for (const record of records) {
      // startvm makes its cgroups right under the host's parent: a record that
      // names another would have every process in it killed and the cgroup removed.
      if (record.kind === 'startvm' && record.cgroupDir && (!this.tree || dirname(record.cgroupDir) !== this.tree.parentDir)) {
        this.log.warn({ vm: record.name, cgroup: record.cgroupDir }, "a guest record names a cgroup outside the host's parent: ignored");
        continue;
      }
      if (record.kind === 'adopted') {
        // A record file is no authority over a cgroup: only the one modifyvm
        // --cgroup noted in the registry for this VM gets its limit back.
        const noted = this.options.adoptions.adoptedCgroup(record.name);
        if (typeof record.cgroupDir !== 'string' || noted !== record.cgroupDir) {
          this.log.warn(
            { vm: record.name, cgroup: record.cgroupDir, registry: noted ?? null, file: this.state.fileOf(record.name) },
            noted === undefined
              ? 'an adopted-cgroup guest record names a VM that is not registered: left alone, its cgroup untouched; delete the file if the VM is gone'
              : "an adopted-cgroup guest record disagrees with the registry's modifyvm --cgroup setting of its VM: left alone, its cgroup untouched; check the cgroup's limit by hand, delete the file, and run modifyvm --cgroup again if the VM should live there",
          );
          continue;
        }
      }
      const cgroup = record.cgroupDir && this.tree ? this.tree.open(record.cgroupDir) : null;
      if (record.kind === 'adopted') {
        // A limit other than its own is the previous host's hand-off: counted until given back.
        const limitBytes = cgroup ? await cgroup.limitBytes().catch(() => undefined) : undefined;
        const g: Guest = { record, cgroup, exited: Promise.resolve(), limitHeld: limitBytes !== undefined && limitBytes !== record.limitBeforeAdoptionBytes };
        this.guests.set(record.name, g);
        // Nobody left in it (the VM powered off while no host ran): nothing
        // can reconnect, so its own limit goes back now; else at power-off.
        if (cgroup && (await cgroup.pids().catch(() => [0])).length === 0)
          await this.restoreLimit(g, 'powered off while the host was down').catch(() => undefined);
        continue;
      }
      const pid = record.agentPid;
      const alive = pid !== undefined && record.agentStartTicks !== undefined && isSameProcess(pid, record.agentStartTicks);
      let exitedResolve!: () => void;
      const guest: Guest = { record, cgroup, exited: new Promise<void>((r) => (exitedResolve = r)) };
      this.guests.set(record.name, guest);
      if (!alive) {
        exitedResolve();
        this.log.info({ vm: record.name }, 'the guest of a previous host is gone: removing what is left of it');
        await this.stop(guest, 'gone after a host restart', Date.now());
        continue;
      }
      // Not our child any more: watch its pid instead of an exit event.
      guest.poll = setInterval(() => {
        if (!isSameProcess(pid, record.agentStartTicks!)) {
          clearInterval(guest.poll);
          exitedResolve();
          this.onAgentExit(guest, 'the agent exited');
        }
      }, 250);
      guest.poll.unref();
      this.log.info({ vm: record.name, pid, cgroup: record.cgroupDir }, 're-adopted a running guest: its agent reconnects');
    }
    if (!this.tree) return;
    for (const name of await this.tree.children()) {
      if (this.guests.has(name)) continue;
      const cg = this.tree.open(`${this.tree.parentDir}/${name}`);
      if ((await cg.pids().catch(() => [0])).length === 0) {
        await this.tree.remove(cg.dir).catch((err) => this.log.warn({ err, cgroup: cg.dir }, 'could not remove a stale cgroup'));
        this.log.info({ cgroup: cg.dir }, 'removed the cgroup of a VM that no longer runs');
      } else {
        this.log.warn({ cgroup: cg.dir }, 'a cgroup under the host parent has processes but no guest record: left alone');
      }
    }
  }

  /** Powers off every guest the host started (the host is stopping); kill -9 leaves them for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    const started = [...this.guests.values()].filter((g) => g.record.kind === 'startvm');
    await Promise.all(
      started.map((g) => this.poweroff(g.record.name).catch((err) => this.log.warn({ err, vm: g.record.name }, 'poweroff at shutdown failed'))),
    );
    for (const g of this.guests.values()) if (g.poll) clearInterval(g.poll);
    // A clean shutdown leaves no empty parent behind (test suites give each
    // host a parent of its own); one that still holds a guest (adopted, or a
    // poweroff that failed) stays for the next host to find.
    if (this.tree && (await this.tree.children().catch(() => ['?'])).length === 0) await this.tree.remove(this.tree.parentDir).catch(() => undefined);
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The last non-empty line of a log (the agent's or the workload's last words), JSON log lines reduced to their msg. */
function lastLine(file: string | undefined): string {
  if (!file) return 'no log';
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean);
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = lines[i]!;
      if (!line.startsWith('{')) return line.slice(0, 300);
      try {
        const j = JSON.parse(line) as { msg?: string; level?: number; err?: { message?: string } };
        // The newest warning or error: a refusal the agent retries is a warning.
        if ((j.level ?? 0) >= 40) return `${j.msg ?? ''}${j.err?.message ? `: ${j.err.message}` : ''}`.slice(0, 300);
      } catch {
        return line.slice(0, 300);
      }
    }
    return lines.length > 0 ? lines[lines.length - 1]!.slice(0, 300) : 'the log is empty';
  } catch {
    return 'no log';
  }
}

/**
 * Whether the process group -agentPid is still the guest's: never for a pid
 * of 1 or less (kill(-1) is every process there is), nor for a pid that
 * another process has taken since (a host restarted long after its guest
 * died would have killed that process's group). While any member of the old
 * group lives, the kernel does not reuse its id.
 */
function ownsGroup(record: GuestRecord): boolean {
  const pid = record.agentPid;
  if (pid === undefined || !Number.isSafeInteger(pid) || pid <= 1) return false;
  const ticks = procStartTicks(pid);
  return ticks === undefined || ticks === record.agentStartTicks;
}

/**
 * Opens a guest's log for appending without following links: the host runs
 * as root, and a planted logs/ or logs/NAME.log link had it append the
 * guest's output to any file (and, with --user, chown it to the guest).
 */
function openGuestLog(logsDir: string, logFile: string): number {
  if (!lstatSync(logsDir).isDirectory())
    throw new HostError('unsafe_file', `${logsDir} is not a directory (a symbolic link?): remove it and the host makes it`);
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted there fails at once instead of blocking startvm.
    fd = openSync(logFile, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENXIO')
      throw new HostError('unsafe_file', `${logFile} is not a regular file (a symbolic link?): remove it and the host makes it`, { cause: err });
    throw err;
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new HostError('unsafe_file', `${logFile} is not a regular file: remove it and the host makes it`);
  }
  return fd;
}
