// balloonctl: VBoxManage's commands for memballoon, over the admin API.
// Exit 0 on success, 1 when the operation fails, 2 when the command line is
// wrong (as VBoxManage's syntax errors); one line on stderr either way, JSON
// ({"error":{code,message}}) with --json.
// Start-up cost: only light modules are imported here; a command that needs a
// heavy one (SQLite, the dashboard, a launcher) imports it inside the command
// (await import), and test/cli-startup.test.ts checks what `list vms` loads.
import { readFileSync } from 'node:fs';
import { formatMetricList, formatMetricsTable } from '../metrics/format.js';
import { METRIC_DESCRIPTIONS } from '../metrics/query.js';
import { HostError } from '../errors.js';
import { AdminClient } from './client.js';
import { withCtlHints } from './ctl-hints.js';
import { loadCtlConfig, type CtlConfig } from './ctl-config.js';
import { COMMAND_USAGE, USAGE } from './ctl-usage.js';
import { setBalloonAndWait } from './ctl-wait.js';
import { formatHost, formatVm, formatVmLine, formatVmMachineReadable } from './format.js';

const out = (text: string): void => {
  process.stdout.write(`${text}\n`);
};
const printJson = (value: unknown): void => out(JSON.stringify(value, null, 2));

/** A usage error of `command` (exit 2), pointing at its help. */
function usage(message: string, command?: string): never {
  throw new HostError('usage', `${message} (see balloonctl ${command && COMMAND_USAGE[command] ? `${command} ` : ''}--help)`);
}

function mibArg(value: string | undefined, flag: string, command: string, what = 'a whole number of MiB'): number {
  if (value === undefined || !/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
    usage(`${flag} needs ${what} (got ${value === undefined ? 'nothing' : `'${value}'`})`, command);
  return Number(value);
}

/** Parses `--flag value` pairs of a command; unknown flags are refused. */
function flagsOf(
  command: string,
  args: readonly string[],
  valued: readonly string[],
  bools: readonly string[] = [],
): { flags: Map<string, string>; positional: string[] } {
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
        if (v === undefined) usage(`${name} needs a value`, command);
        flags.set(name, v);
      } else usage(`${command}: unknown option '${name}'`, command);
    } else positional.push(a);
  }
  return { flags, positional };
}

function versionOf(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

async function list(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const { positional } = flagsOf('list', args, []);
  const [what, ...rest] = positional;
  if ((what !== 'vms' && what !== 'runningvms') || rest.length > 0) usage("list needs 'vms' or 'runningvms'", 'list');
  const vms = await client.vms(what === 'runningvms');
  if (cfg.json) printJson(vms);
  else for (const vm of vms) out(formatVmLine(vm));
}

async function showvminfo(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const { flags, positional } = flagsOf('showvminfo', args, [], ['--machinereadable']);
  if (positional.length !== 1) usage('showvminfo needs exactly one VM name', 'showvminfo');
  if (cfg.json && flags.has('--machinereadable')) usage('showvminfo takes --json or --machinereadable, not both', 'showvminfo');
  const vm = await client.vm(positional[0]!);
  if (cfg.json) printJson(vm);
  else out(flags.has('--machinereadable') ? formatVmMachineReadable(vm) : formatVm(vm));
}

async function createvm(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const { flags, positional } = flagsOf('createvm', args, ['--name', '--memory']);
  if (positional.length > 0) usage(`createvm: unexpected '${positional[0]}'`, 'createvm');
  const name = flags.get('--name');
  if (!name) usage('createvm needs --name NAME', 'createvm');
  const vm = await client.create(name, mibArg(flags.get('--memory'), '--memory', 'createvm'));
  if (cfg.json) return printJson(vm);
  out(`Virtual machine '${vm.name}' is created and registered (${vm.memoryMib} MiB).`);
  // Shown once: the host keeps only its hash.
  out(`Token: ${vm.token}\n(give it to the VM's agent: balloon-agent --token, or MEMBALLOON_TOKEN; it is not shown again)`);
}

async function unregistervm(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const { positional } = flagsOf('unregistervm', args, []);
  if (positional.length !== 1) usage('unregistervm needs exactly one VM name', 'unregistervm');
  await client.unregister(positional[0]!);
  if (cfg.json) printJson({ name: positional[0], unregistered: true });
  else out(`Virtual machine '${positional[0]}' is unregistered.`);
}

async function modifyvm(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const c = 'modifyvm';
  const { flags, positional } = flagsOf(c, args, [
    '--memory',
    '--guestmemoryballoon',
    '--pagefusion',
    '--balloon-policy',
    '--memory-min',
    '--balloon-max',
    '--memory-weight',
    '--memory-buffer',
    '--cgroup',
  ]);
  const [name, ...rest] = positional;
  if (!name || rest.length > 0) usage('modifyvm needs exactly one VM name', c);
  const s: Record<string, unknown> = {};
  for (const [flag, value] of flags) {
    switch (flag) {
      case '--memory':
        s.memoryMib = mibArg(value, flag, c);
        break;
      case '--guestmemoryballoon':
        s.defaultBalloonMib = mibArg(value, flag, c);
        break;
      case '--pagefusion':
        if (value !== 'on' && value !== 'off') usage("--pagefusion takes 'on' or 'off'", c);
        s.pageFusion = value === 'on';
        break;
      case '--balloon-policy':
        if (value !== 'manual' && value !== 'auto') usage("--balloon-policy takes 'manual' or 'auto'", c);
        s.balloonPolicy = value;
        break;
      case '--memory-min':
        s.memoryMinMib = mibArg(value, flag, c);
        break;
      case '--balloon-max':
        s.balloonMaxMib = value === 'none' ? null : mibArg(value, flag, c, "a whole number of MiB or 'none'");
        break;
      case '--memory-weight':
        s.memoryWeight = mibArg(value, flag, c, 'a whole number from 1 to 10000');
        break;
      case '--memory-buffer':
        s.memoryBufferPercent = mibArg(value, flag, c, 'a whole number of percent (0 to 100)');
        break;
      case '--cgroup':
        s.cgroup = value === 'none' ? null : value;
        break;
    }
  }
  if (Object.keys(s).length === 0) usage('modifyvm needs at least one setting', c);
  const vm = await client.modify(name, s);
  if (cfg.json) printJson(vm);
}

async function controlvm(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const c = 'controlvm';
  const { flags, positional } = flagsOf(c, args, ['--timeout'], ['--wait']);
  const [name, verb, size, ...rest] = positional;
  if (!name) usage('controlvm needs a VM name', c);
  if (verb === 'poweroff' || verb === 'acpipowerbutton') {
    if (size !== undefined) usage(`controlvm: unexpected '${size}'`, c);
    const vm = await client.powerAction(name, verb);
    if (cfg.json) printJson(vm);
    else out(verb === 'poweroff' ? `VM '${name}' is powered off.` : `VM '${name}': ACPI power button pressed (SIGTERM to its agent).`);
    return;
  }
  if (verb !== 'guestmemoryballoon')
    usage(`controlvm knows 'guestmemoryballoon', 'poweroff' and 'acpipowerbutton' (got ${verb === undefined ? 'nothing' : `'${verb}'`})`, c);
  if (rest.length > 0) usage(`controlvm: unexpected '${rest[0]}'`, c);
  const targetMib = mibArg(size, 'guestmemoryballoon', c);
  const timeoutText = flags.get('--timeout') ?? '60';
  if (!/^\d+(\.\d+)?$/.test(timeoutText)) usage(`--timeout needs seconds (got '${timeoutText}')`, c);
  if (!flags.has('--wait')) {
    const vm = await client.setBalloon(name, targetMib);
    if (cfg.json) printJson(vm);
    else
      out(
        vm.starting
          ? `VM '${name}' is starting: balloon target ${targetMib} MiB, applied once its guest is admitted`
          : `VM '${name}': balloon target set to ${targetMib} MiB`,
      );
    return;
  }
  const sink = cfg.json ? undefined : { tty: cfg.tty, write: (t: string) => void process.stderr.write(t) };
  const vm = await setBalloonAndWait(client, name, targetMib, Number(timeoutText) * 1000, sink);
  if (cfg.json) printJson(vm);
  else out(`VM '${name}': balloon at ${vm.balloon?.actualMib ?? 0} MiB`);
}

/** startvm NAME [--type headless] [--user USER] -- COMMAND [ARGS…]: everything after `--` is the command, untouched. */
async function startvm(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const c = 'startvm';
  const dash = args.indexOf('--');
  const command = dash >= 0 ? args.slice(dash + 1) : [];
  const { flags, positional } = flagsOf(c, dash >= 0 ? args.slice(0, dash) : args, ['--type', '--user']);
  const [name, ...rest] = positional;
  if (!name || rest.length > 0) usage('startvm needs exactly one VM name, then -- COMMAND [ARGS…]', c);
  if (command.length === 0) usage('startvm needs a command after --', c);
  const type = flags.get('--type');
  if (type !== undefined && type !== 'headless') usage("--type takes only 'headless'", c);
  const user = flags.get('--user');
  const vm = await client.startvm(name, { command, ...(type ? { type } : {}), ...(user ? { user } : {}) });
  if (cfg.json) return printJson(vm);
  out(`VM '${name}' has been successfully started.${vm.managed?.logFile ? ` Log: ${vm.managed.logFile}` : ''}`);
}

async function metrics(client: AdminClient, cfg: CtlConfig, args: readonly string[]): Promise<void> {
  const { positional } = flagsOf('metrics', args, []);
  const [verb, vmName, metric, ...rest] = positional;
  if (verb === 'list' && positional.length === 1) {
    return cfg.json ? printJson(METRIC_DESCRIPTIONS) : out(formatMetricList(METRIC_DESCRIPTIONS));
  }
  if (verb !== 'query' || rest.length > 0) usage('metrics takes list, or query [NAME] [METRIC]', 'metrics');
  const rows = await client.metrics(vmName, metric);
  if (cfg.json) printJson(rows);
  else process.stdout.write(formatMetricsTable(rows));
}

const COMMANDS: Readonly<Record<string, (client: AdminClient, cfg: CtlConfig, args: readonly string[]) => Promise<void>>> = {
  list,
  showvminfo,
  showhostinfo: async (client, cfg, args) => {
    if (args.length > 0) usage(`showhostinfo takes no arguments (got '${args[0]}')`, 'showhostinfo');
    const h = await client.host();
    if (cfg.json) printJson(h);
    else out(formatHost(h));
  },
  createvm,
  unregistervm,
  modifyvm,
  controlvm,
  startvm,
  metrics,
};

async function main(cfg: CtlConfig): Promise<void> {
  // As the bin answers a lone --version: the version alone; with a command it is a mistake, not a request.
  if (cfg.version) {
    if (cfg.args.length > 0) usage(`--version takes no command (got '${cfg.args[0]}')`);
    return out(versionOf());
  }
  let [command, ...args] = cfg.args;
  // `balloonctl help COMMAND` is `balloonctl COMMAND --help`.
  const help = cfg.help || command === 'help';
  if (command === 'help') [command, ...args] = args;
  if (help || command === undefined) {
    if (command !== undefined && !COMMAND_USAGE[command]) usage(`unknown command '${command}'`);
    return out(command === undefined ? USAGE : COMMAND_USAGE[command]!);
  }
  const run = COMMANDS[command];
  if (!run) usage(`unknown command '${command}'`);
  try {
    return await run(new AdminClient(cfg.hostUrl, cfg.adminToken), cfg, args);
  } catch (err) {
    throw withCtlHints(err, cfg.hostUrl, cfg.tokenLookup);
  }
}

/** Prints the error once (JSON with --json) and sets the exit code: 2 for usage, 1 otherwise. */
function fail(err: unknown, json: boolean): void {
  const e = HostError.from(err);
  const message = e.message.split('\n')[0]!;
  process.stderr.write(json ? `${JSON.stringify({ error: { code: e.code, message } })}\n` : `balloonctl: error: ${message}\n`);
  // As VBoxManage: 2 for a command line it cannot parse, 1 for an operation that failed.
  process.exitCode = e.code === 'usage' ? 2 : 1;
}

const argv = process.argv.slice(2);
try {
  await main(loadCtlConfig(argv));
} catch (err) {
  fail(err, argv.includes('--json'));
}
