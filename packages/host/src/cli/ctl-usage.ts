// balloonctl's help: the overview (`balloonctl --help`) and one usage text per
// command (`balloonctl COMMAND --help`, or `balloonctl help COMMAND`).

/** The overview. */
export const USAGE = `Usage: balloonctl [--host URL] [--admin-token T | --data-dir DIR] [--json] COMMAND [--help]

Commands:
  list vms | runningvms
  showvminfo NAME [--machinereadable]
  showhostinfo
  createvm --name NAME --memory MIB
  unregistervm NAME
  modifyvm NAME [--memory MIB] [--guestmemoryballoon MIB] [--pagefusion on|off]
                [--balloon-policy manual|auto] [--memory-min MIB] [--balloon-max MIB|none]
                [--memory-weight N] [--memory-buffer PCT] [--cgroup PATH|none]
  controlvm NAME guestmemoryballoon MIB [--wait] [--timeout S]
  startvm NAME [--type headless] [--user USER] -- COMMAND [ARGS…]
  controlvm NAME poweroff | acpipowerbutton
  metrics list | metrics query [NAME] [METRIC]

balloonctl COMMAND --help shows a command's usage; balloonctl --version its version.

The host is --host URL, else $MEMBALLOON_URL, else http://127.0.0.1:7450.
The admin token is --admin-token T, else $MEMBALLOON_ADMIN_TOKEN, else the
file admin.token in --data-dir DIR (or $MEMBALLOON_DATA_DIR); without those,
in the data directory of the balloon-host listening at that URL (each host
records where it is for its user), then in the default data directory.
Exit status: 0 success, 1 the operation failed, 2 the command line is wrong.
With --json, output is JSON and errors are {"error":{"code","message"}} on stderr.`;

/** Usage of each command, by command name. */
export const COMMAND_USAGE: Readonly<Record<string, string>> = Object.freeze({
  list: `Usage: balloonctl list vms | runningvms [--json]

Lists the registered VMs (runningvms: only those with a guest session), one
line each; --json prints an array of the objects showvminfo --json prints.`,
  showvminfo: `Usage: balloonctl showvminfo NAME [--machinereadable | --json]

Shows a VM's settings and, while it runs, its balloon, pid and guest figures.
--machinereadable prints VBoxManage's key="value" lines (numbers bare, strings
quoted); --json the API's object.`,
  showhostinfo: `Usage: balloonctl showhostinfo [--json]

Shows the host: version, address, data directory, the pool (size, held,
reclaimed, free), VM counts and page fusion (KSM).`,
  createvm: `Usage: balloonctl createvm --name NAME --memory MIB [--json]

Registers a VM with MIB of memory and prints its guest token once (give it to
the VM's agent: balloon-agent --token, or MEMBALLOON_TOKEN).`,
  unregistervm: `Usage: balloonctl unregistervm NAME

Removes a powered-off VM from the registry.`,
  modifyvm: `Usage: balloonctl modifyvm NAME SETTING...

While the VM is powered off:
  --memory MIB                the VM's memory
  --guestmemoryballoon MIB    the balloon requested at every start
  --pagefusion on|off         page fusion
Any time (automatic balloon policy):
  --balloon-policy manual|auto
  --memory-min MIB            memory the policy never takes below
  --balloon-max MIB|none      largest balloon the policy sets (none: the 90 % rule alone)
  --memory-weight N           share under contention (1 to 10000)
  --memory-buffer PCT         free memory the policy leaves the guest (0 to 100)
  --cgroup PATH|none          adopt an existing memory cgroup as the VM's (powered off)`,
  controlvm: `Usage: balloonctl controlvm NAME guestmemoryballoon MIB [--wait] [--timeout S]
       balloonctl controlvm NAME poweroff | acpipowerbutton

guestmemoryballoon: sets the balloon of a running VM to MIB (0 deflates it).
With --wait, waits until the guest holds it, showing the progress (and any
reclaim from other VMs it needs first) on stderr; fails naming the reason if
the balloon stops short, or after --timeout seconds (default 60).
poweroff: SIGTERM to the agent of a VM the host started (it deflates and says
goodbye), SIGKILL after a grace. acpipowerbutton: SIGTERM only.`,
  startvm: `Usage: balloonctl startvm NAME [--type headless] [--user USER] -- COMMAND [ARGS…]

The host starts the VM: its memory cgroup (limit = its memory), balloon-agent
wrapping COMMAND in it, output to a log file. Everything after -- is the
command, untouched. Needs the admin token (never the read-only one).`,
  metrics: `Usage: balloonctl metrics list [--json]
       balloonctl metrics query [NAME] [METRIC] [--json]

list: the metric names and what they measure.
query: current values under VirtualBox's names. NAME is a VM, 'host', or '*'
(default: every running VM and the host). METRIC is a comma-separated list;
a pattern with * or ? matches whole names, anything else is a prefix
(Guest/RAM, */Free). Values are in kB (1024 bytes), as VBoxManage prints
them; --json rows are {object, metric, valueKib}.`,
});
