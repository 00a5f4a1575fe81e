// balloonctl: VBoxManage's commands for memballoon, over the admin API.
// Exit 0 on success; otherwise 1 with one line on stderr. --json on every read.
// Start-up cost: only light modules are imported here; a command that needs a
// heavy one (SQLite, the dashboard, a launcher) imports it inside the command
// (await import), and test/cli-startup.test.ts checks what `list vms` loads.
import type { VmView } from '../service/views.js';
import { formatMetricsTable } from '../metrics/format.js';
import type { MetricRow } from '../metrics/query.js';
import { AdminClient } from './client.js';
import { HostError } from '../errors.js';
import { loadCtlConfig, type CtlConfig } from './ctl-config.js';
import { formatHost, formatVm, formatVmLine, progressBar, reasonText } from './format.js';

const USAGE = `Usage: balloonctl [--host URL] [--json] COMMAND
       balloonctl --version

  list vms | runningvms
  showvminfo NAME
  showhostinfo
  createvm --name NAME --memory MIB
  unregistervm NAME
  modifyvm NAME [--memory MIB] [--guestmemoryballoon MIB] [--pagefusion on|off]
                [--balloon-policy manual|auto] [--memory-min MIB] [--balloon-max MIB]
                [--memory-weight N] [--memory-buffer PCT]
                [--cgroup PATH|none]    (adopt an existing memory cgroup; VM powered off)
  controlvm NAME guestmemoryballoon MIB [--wait] [--timeout S]
  startvm NAME [--type headless] [--user USER] -- COMMAND [ARGS…]
                                  the host starts the VM: its memory cgroup (limit = its memory),
                                  balloon-agent wrapping COMMAND in it, output to a log file
  controlvm NAME poweroff         SIGTERM to the agent (deflate, Goodbye), SIGKILL after a grace
  controlvm NAME acpipowerbutton  SIGTERM only (the gentle form)
  metrics query [NAME] [METRIC]

The host is --host URL, else $MEMBALLOON_URL, else http://127.0.0.1:7450.
The admin token is --admin-token T, else $MEMBALLOON_ADMIN_TOKEN, else the file
admin.token in --data-dir DIR (else $MEMBALLOON_DATA_DIR, else the host's default).
createvm prints the VM's guest token once: give it to its agent (--token).`;

const out = (text: string): void => {
  process.stdout.write(`${text}\n`);
};
const printJson = (value: unknown): void => out(JSON.stringify(value, null, 2));

function usage(message: string): never {
  throw new HostError('usage', `${message} (see balloonctl --help)`);
}

function mibArg(value: string | undefined, flag: string, what = 'a whole number of MiB'): number {
  if (value === undefined || !/^\d+$/.test(value)) usage(`${flag} needs ${what} (got ${value === undefined ? 'nothing' : `'${value}'`})`);
  return Number(value);
}

/** Parses `--flag value` pairs of a command; unknown flags are refused. */
function flagsOf(args: readonly string[], valued: readonly string[], bools: readonly string[] = []): { flags: Map<string, string>; positional: string[] } {
  const flags = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(0, eq) : a;
      if (bools.includes(name)) flags.set(name, 'true');
      else if (valued.includes(name)) {
        const v = eq > 0 ? a.slice(eq + 1) : args[++i];
        if (v === undefined) usage(`${name} needs a value`);
        flags.set(name, v);
      } else usage(`unknown option '${name}'`);
    } else positional.push(a);
  }
  return { flags, positional };
}

async function list(client: AdminClient, cfg: CtlConfig, what: string | undefined): Promise<void> {
  if (what !== 'vms' && what !== 'runningvms') usage("list needs 'vms' or 'runningvms'");
  const vms = await client.vms(what === 'runningvms');
  if (cfg.json) printJson(vms);
  else for (const vm of vms) out(formatVmLine(vm));
}

async function modifyvm(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const { flags, positional } = flagsOf(args, ['--memory', '--guestmemoryballoon', '--pagefusion', '--balloon-policy', '--memory-min', '--balloon-max', '--memory-weight', '--memory-buffer', '--cgroup']);
  const [name, ...rest] = positional;
  if (!name || rest.length > 0) usage('modifyvm needs exactly one VM name');
  const s: Record<string, unknown> = {};
  for (const [flag, value] of flags) {
    switch (flag) {
      case '--memory':
        s.memoryMib = mibArg(value, flag);
        break;
      case '--guestmemoryballoon':
        s.defaultBalloonMib = mibArg(value, flag);
        break;
      case '--pagefusion':
        if (value !== 'on' && value !== 'off') usage("--pagefusion takes 'on' or 'off'");
        s.pageFusion = value === 'on';
        break;
      case '--balloon-policy':
        if (value !== 'manual' && value !== 'auto') usage("--balloon-policy takes 'manual' or 'auto'");
        s.balloonPolicy = value;
        break;
      case '--memory-min':
        s.memoryMinMib = mibArg(value, flag);
        break;
      case '--balloon-max':
        s.balloonMaxMib = mibArg(value, flag);
        break;
      case '--memory-weight':
        s.memoryWeight = mibArg(value, flag, 'a whole number from 1 to 10000');
        break;
      case '--memory-buffer':
        s.memoryBufferPercent = mibArg(value, flag, 'a whole number of percent (0 to 100)');
        break;
      case '--cgroup':
        s.cgroup = value === 'none' ? null : value;
        break;
    }
  }
  if (Object.keys(s).length === 0) usage('modifyvm needs at least one setting');
  const vm = await client.modify(name, s);
  if (cfg.json) printJson(vm);
}

async function controlvm(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const { flags, positional } = flagsOf(args, ['--timeout'], ['--wait']);
  const [name, verb, size, ...rest] = positional;
  if (!name) usage('controlvm needs a VM name');
  if (verb === 'poweroff' || verb === 'acpipowerbutton') {
    if (size !== undefined) usage(`unexpected '${size}'`);
    const vm = await client.powerAction(name, verb);
    if (cfg.json) printJson(vm);
    else out(verb === 'poweroff' ? `VM '${name}' is powered off.` : `VM '${name}': ACPI power button pressed (SIGTERM to its agent).`);
    return;
  }
  if (verb !== 'guestmemoryballoon') usage(`controlvm knows 'guestmemoryballoon', 'poweroff' and 'acpipowerbutton' (got ${verb === undefined ? 'nothing' : `'${verb}'`})`);
  if (rest.length > 0) usage(`unexpected '${rest[0]}'`);
  const targetMib = mibArg(size, 'guestmemoryballoon');
  const timeoutText = flags.get('--timeout') ?? '60';
  if (!/^\d+(\.\d+)?$/.test(timeoutText)) usage('--timeout needs seconds');
  const before = await client.setBalloon(name, targetMib);
  const generation = before.balloon?.generation ?? 0;
  if (!flags.has('--wait')) {
    if (cfg.json) printJson(before);
    else out(`VM '${name}': balloon target set to ${targetMib} MiB`);
    return;
  }
  const vm = await waitForBalloon(client, cfg, name, targetMib, generation, before.balloon?.actualMib ?? 0, Number(timeoutText) * 1000);
  if (cfg.json) printJson(vm);
  else out(`VM '${name}': balloon at ${vm.balloon?.actualMib ?? 0} MiB`);
}

/** Polls until the balloon reaches the target; fails with the guest's reason if it stops short. */
async function waitForBalloon(client: AdminClient, cfg: CtlConfig, name: string, targetMib: number, generation: number, startMib: number, timeoutMs: number): Promise<VmView> {
  const deadline = Date.now() + timeoutMs;
  let lastShown = -1;
  const show = (actualMib: number, final = false) => {
    if (cfg.json) return;
    if (cfg.tty) {
      process.stdout.write(`\r${progressBar(actualMib, targetMib, startMib)}${final ? '\n' : ''}`);
    } else if (actualMib !== lastShown) {
      out(`VM '${name}': balloon ${actualMib}/${targetMib} MiB`);
    }
    lastShown = actualMib;
  };
  for (;;) {
    const vm = await client.vm(name);
    const b = vm.balloon;
    if (vm.state !== 'running' || !b) {
      if (cfg.tty && !cfg.json) process.stdout.write('\n');
      throw new HostError('not_running', `VM '${name}' stopped before its balloon reached ${targetMib} MiB`);
    }
    if (b.generation > generation) {
      if (cfg.tty && !cfg.json) process.stdout.write('\n');
      throw new HostError('cancelled', `VM '${name}': a newer balloon target (${b.targetMib} MiB) replaced ${targetMib} MiB before it was reached`);
    }
    show(b.actualMib);
    if (b.actualMib === targetMib) {
      show(b.actualMib, true);
      return vm;
    }
    if (b.state === 'short') {
      if (cfg.tty && !cfg.json) process.stdout.write('\n');
      throw new HostError('short', `VM '${name}': the balloon stopped short at ${b.actualMib} of ${targetMib} MiB: ${reasonText(b.reason)}`);
    }
    if (Date.now() >= deadline) {
      if (cfg.tty && !cfg.json) process.stdout.write('\n');
      throw new HostError('timeout', `VM '${name}': the balloon is at ${b.actualMib} of ${targetMib} MiB after ${Math.round(timeoutMs / 1000)} s (--timeout)`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** startvm NAME [--type headless] [--user USER] -- COMMAND [ARGS…]: everything after `--` is the command, untouched. */
async function startvm(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const dash = args.indexOf('--');
  const command = dash >= 0 ? args.slice(dash + 1) : [];
  const { flags, positional } = flagsOf(dash >= 0 ? args.slice(0, dash) : args, ['--type', '--user']);
  const [name, ...rest] = positional;
  if (!name || rest.length > 0) usage('startvm needs exactly one VM name, then -- COMMAND [ARGS…]');
  if (command.length === 0) usage('startvm needs a command after --');
  const type = flags.get('--type');
  if (type !== undefined && type !== 'headless') usage("--type takes only 'headless'");
  const user = flags.get('--user');
  const vm = await client.startvm(name, { command, ...(type ? { type } : {}), ...(user ? { user } : {}) });
  if (cfg.json) return printJson(vm);
  out(`VM '${name}' has been successfully started.${vm.managed?.logFile ? ` Log: ${vm.managed.logFile}` : ''}`);
}

async function main(cfg: CtlConfig): Promise<void> {
  const [command, ...args] = cfg.args;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    out(USAGE);
    return;
  }
  const client = new AdminClient(cfg.hostUrl, cfg.adminToken);
  switch (command) {
    case 'list':
      return list(client, cfg, args[0]);
    case 'showvminfo': {
      if (args.length !== 1) usage('showvminfo needs exactly one VM name');
      const vm = await client.vm(args[0]!);
      return cfg.json ? printJson(vm) : out(formatVm(vm));
    }
    case 'showhostinfo': {
      const h = await client.host();
      return cfg.json ? printJson(h) : out(formatHost(h));
    }
    case 'createvm': {
      const { flags, positional } = flagsOf(args, ['--name', '--memory']);
      if (positional.length > 0) usage(`unexpected '${positional[0]}'`);
      const name = flags.get('--name');
      if (!name) usage('createvm needs --name NAME');
      const vm = await client.create(name, mibArg(flags.get('--memory'), '--memory'));
      if (cfg.json) return printJson(vm);
      out(`Virtual machine '${vm.name}' is created and registered (${vm.memoryMib} MiB).`);
      // Shown once: the host keeps only its hash.
      return out(`Token: ${vm.token}\n(give it to the VM's agent: balloon-agent --token, or MEMBALLOON_TOKEN; it is not shown again)`);
    }
    case 'unregistervm': {
      if (args.length !== 1) usage('unregistervm needs exactly one VM name');
      await client.unregister(args[0]!);
      return cfg.json ? printJson({ name: args[0], unregistered: true }) : out(`Virtual machine '${args[0]}' is unregistered.`);
    }
    case 'modifyvm':
      return modifyvm(client, cfg, args);
    case 'controlvm':
      return controlvm(client, cfg, args);
    case 'startvm':
      return startvm(client, cfg, args);
    case 'metrics': {
      const [verb, vmName, metric, ...rest] = args;
      if (verb !== 'query' || rest.length > 0) usage('usage: metrics query [NAME] [METRIC]');
      const rows = (await client.metrics(vmName, metric)) as MetricRow[];
      return cfg.json ? printJson(rows) : out(formatMetricsTable(rows));
    }
    default:
      usage(`unknown command '${command}'`);
  }
}

try {
  await main(loadCtlConfig(process.argv.slice(2)));
} catch (err) {
  const message = (err instanceof Error ? err.message : String(err)).split('\n')[0];
  process.stderr.write(`balloonctl: error: ${message}\n`);
  process.exitCode = 1;
}
