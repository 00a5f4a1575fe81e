// The admin API's routes for guests the host owns (../guests): startvm,
// poweroff, acpipowerbutton and modifyvm --cgroup. They run commands and stop
// processes, so they are admin-only: no read-only credential may reach them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isLoopback } from '../auth/tokens.js';
import { HostError } from '../errors.js';
import type { GuestLauncher } from '../guests/launcher.js';
import type { HostService } from '../service/host-service.js';
import { methodNotAllowed, readJson, sendJson } from './http.js';

/** Paths (under /api/v1/vms/NAME/) that need the full admin credential. */
export const ADMIN_ONLY_VM_ACTIONS = ['startvm', 'poweroff', 'acpipowerbutton'] as const;

/**
 * Serves a guest route and returns true, or returns false if the request is
 * not one. `sub` is the segment after /vms/NAME (undefined for PATCH of the VM).
 */
export async function routeGuests(
  launcher: GuestLauncher | undefined,
  service: HostService,
  name: string,
  sub: string | undefined,
  req: IncomingMessage,
  res: ServerResponse,
  patchBody?: Record<string, unknown>,
): Promise<boolean> {
  const method = req.method ?? 'GET';
  if (sub === undefined) {
    // PATCH /vms/NAME with { cgroup }: modifyvm --cgroup PATH | none.
    if (method !== 'PATCH' || patchBody === undefined || !('cgroup' in patchBody)) return false;
    if (Object.keys(patchBody).length > 1) throw new HostError('invalid_argument', 'modifyvm --cgroup goes alone, without other settings');
    const value = patchBody.cgroup;
    if (value !== null && value !== 'none' && typeof value !== 'string')
      throw new HostError('invalid_argument', "cgroup must be a path in the memory hierarchy, or 'none'");
    await available(launcher, 'modifyvm --cgroup').adopt(name, value === null || value === 'none' ? null : value);
    sendJson(res, 200, service.vmView(name));
    return true;
  }
  if (!(ADMIN_ONLY_VM_ACTIONS as readonly string[]).includes(sub)) return false;
  if (method !== 'POST') throw methodNotAllowed(res, method, `/api/v1/vms/${name}/${sub}`, ['POST']);
  const g = available(launcher, sub);
  if (sub === 'startvm') {
    const body = await readJson(req);
    await g.startvm(name, { command: body.command, type: body.type, user: body.user, fromLoopback: isLoopback(req.socket.remoteAddress ?? '') });
    sendJson(res, 200, service.vmView(name));
  } else {
    await g.poweroff(name, sub === 'acpipowerbutton');
    sendJson(res, sub === 'acpipowerbutton' ? 202 : 200, service.vmView(name));
  }
  return true;
}

function available(launcher: GuestLauncher | undefined, what: string): GuestLauncher {
  if (!launcher) throw new HostError('not_found', `${what} is not available: this host does not start guests`);
  return launcher;
}
