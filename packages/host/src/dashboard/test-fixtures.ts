// A fake host for the dashboard's tests: an HTTP server on port 0 that mounts
// createDashboard over synthetic VMs, with a `PUT /api/v1/vms/:name/balloon`
// that applies the host's rules (90 %, pool) and moves the fake guest's actual
// balloon towards the target in steps, as a real guest does.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostView, VmView } from '../service/views.js';
import { runningVm, poweredOffVm, snapshotOf } from '../metrics/test-fixtures.js';
import { createDashboard, type Dashboard, type DashboardOptions } from './index.js';

/** A running fake host. */
export interface FakeHost {
  url: string;
  server: Server;
  dashboard: Dashboard;
  /** Current views; change them with `update`. */
  vms: VmView[];
  /** Replaces a VM's fields and notifies the dashboard. */
  update(name: string, change: (vm: VmView) => void): void;
  /** The Authorization header of the latest balloon request (undefined if none came or it had none). */
  lastAuthorization: string | undefined;
  /** Notifies the dashboard without changing anything. */
  touch(): void;
  close(): Promise<void>;
}

/** Starts a fake host on 127.0.0.1:0 with the demo's VMs; options pass through to createDashboard. */
export async function startFakeHost(options: Partial<DashboardOptions> & { poolSizeMib?: number; stepMib?: number; stepMs?: number } = {}): Promise<FakeHost> {
  const poolSizeMib = options.poolSizeMib ?? 1536;
  const stepMib = options.stepMib ?? 64;
  const stepMs = options.stepMs ?? 40;
  const vms: VmView[] = [
    runningVm('vm-small', 512, { targetMib: 0, actualMib: 0 }),
    runningVm('vm-medium', 768, { targetMib: 256, actualMib: 256 }),
    runningVm('vm-large', 1024, { targetMib: 600, actualMib: 600 }),
    poweredOffVm('vm-off', 2048),
  ];
  const listeners = new Set<() => void>();
  const notify = (): void => listeners.forEach((l) => l());
  const snapshot = (): { host: HostView; vms: VmView[] } => {
    const copy = structuredClone(vms);
    for (const vm of copy) {
      if (vm.balloon) vm.heldMib = vm.memoryMib - Math.min(vm.balloon.targetMib, vm.balloon.actualMib);
    }
    return snapshotOf(copy, poolSizeMib);
  };
  const moving = new Map<string, NodeJS.Timeout>();

  /** Moves the guest's actual one step at a time towards its target. */
  const move = (vm: VmView): void => {
    clearInterval(moving.get(vm.name));
    const timer = setInterval(() => {
      const b = vm.balloon!;
      const delta = b.targetMib - b.actualMib;
      const step = Math.sign(delta) * Math.min(Math.abs(delta), stepMib);
      b.actualMib += step;
      b.lockedMib = b.actualMib;
      b.state = b.actualMib === b.targetMib ? 'steady' : step > 0 ? 'inflating' : 'deflating';
      vm.stats!.availableMib = Math.max(0, vm.memoryMib / 2 - b.actualMib / 2);
      if (b.actualMib === b.targetMib) {
        clearInterval(timer);
        moving.delete(vm.name);
      }
      notify();
    }, stepMs);
    moving.set(vm.name, timer);
  };

  const dashboard = createDashboard({ snapshot, subscribe: (l) => (listeners.add(l), () => listeners.delete(l)), ...options });

  const server = createServer((req, res) => {
    if (dashboard.handle(req, res)) return;
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(body));
    };
    const m = /^\/api\/v1\/vms\/([^/]+)\/balloon$/.exec(req.url ?? '');
    if (!m || req.method !== 'PUT') return reply(404, { error: { code: 'not_found', message: 'no such route' } });
    fake.lastAuthorization = req.headers.authorization;
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => {
      const vm = vms.find((v) => v.name === decodeURIComponent(m[1]!));
      if (!vm) return reply(404, { error: { code: 'unknown_vm', message: `no VM named '${m[1]}'` } });
      if (!vm.balloon) return reply(409, { error: { code: 'not_running', message: `VM '${vm.name}' is not running` } });
      let targetMib: unknown;
      try {
        targetMib = (JSON.parse(raw) as { targetMib?: unknown }).targetMib;
      } catch {
        return reply(400, { error: { code: 'invalid_argument', message: 'the body is not JSON' } });
      }
      if (typeof targetMib !== 'number' || !Number.isInteger(targetMib) || targetMib < 0) {
        return reply(400, { error: { code: 'invalid_argument', message: 'targetMib must be a whole number of MiB' } });
      }
      if (targetMib >= vm.memoryMib * 0.9) {
        return reply(422, {
          error: {
            code: 'balloon_too_large',
            message: `a balloon of ${targetMib} MiB is 90 % or more of ${vm.name}'s ${vm.memoryMib} MiB`,
          },
        });
      }
      const heldAfter = vm.memoryMib - targetMib;
      const heldOthers = snapshot().vms.reduce((s, v) => s + (v.name !== vm.name ? (v.heldMib ?? 0) : 0), 0);
      if (heldOthers + heldAfter > poolSizeMib) {
        return reply(409, {
          error: {
            code: 'pool_exhausted',
            message: `the pool cannot cover ${vm.name} holding ${heldAfter} MiB: ${poolSizeMib - heldOthers} MiB free`,
          },
        });
      }
      vm.balloon.targetMib = targetMib;
      vm.balloon.generation += 1;
      notify();
      move(vm);
      reply(
        202,
        snapshot().vms.find((v) => v.name === vm.name),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const fake: FakeHost = {
    url: `http://127.0.0.1:${port}`,
    lastAuthorization: undefined,
    server,
    dashboard,
    vms,
    update(name, change) {
      const vm = vms.find((v) => v.name === name);
      if (!vm) throw new Error(`no fake VM ${name}`);
      change(vm);
      notify();
    },
    touch: notify,
    async close() {
      for (const timer of moving.values()) clearInterval(timer);
      dashboard.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}
