// The toolkit talks to a host through its admin API, as balloonctl does, so
// that the same calls work against the in-process host it starts and against
// a host the test suite already runs (a URL and an admin token).
import type { ApiErrorView, HostView, VmView } from '@memballoon/host';
import { TestingError } from './errors.js';

/** Where a host's admin API is, and the credential for it. */
export interface HostAddress {
  /** Base URL, e.g. http://127.0.0.1:7450. */
  url: string;
  /** The admin token (undefined when the host runs with --insecure-no-auth). */
  adminToken: string | undefined;
}

/** A small admin-API client: JSON in and out, every refusal a TestingError('host_refused'). */
export class AdminApi {
  constructor(private readonly host: HostAddress) {}

  /** GET /api/v1/host (`showhostinfo`). */
  hostInfo(): Promise<HostView> {
    return this.call<HostView>('GET', '/host');
  }

  /** GET /api/v1/vms/NAME (`showvminfo`). */
  vm(name: string): Promise<VmView> {
    return this.call<VmView>('GET', `/vms/${encodeURIComponent(name)}`);
  }

  /** POST /api/v1/vms (`createvm`). */
  createVm(name: string, memoryMib: number): Promise<VmView> {
    return this.call<VmView>('POST', '/vms', { name, memoryMib });
  }

  /** PATCH /api/v1/vms/NAME (`modifyvm`). */
  modifyVm(name: string, settings: Record<string, unknown>): Promise<VmView> {
    return this.call<VmView>('PATCH', `/vms/${encodeURIComponent(name)}`, settings);
  }

  /** POST /api/v1/vms/NAME/startvm (`startvm NAME -- COMMAND`). */
  startVm(name: string, command: readonly string[]): Promise<VmView> {
    return this.call<VmView>('POST', `/vms/${encodeURIComponent(name)}/startvm`, { command, type: 'headless' });
  }

  /** PUT /api/v1/vms/NAME/balloon (`controlvm NAME guestmemoryballoon MIB`). */
  setBalloon(name: string, targetMib: number): Promise<VmView> {
    return this.call<VmView>('PUT', `/vms/${encodeURIComponent(name)}/balloon`, { targetMib });
  }

  /** POST /api/v1/vms/NAME/poweroff (`controlvm NAME poweroff`). */
  powerOff(name: string): Promise<VmView> {
    return this.call<VmView>('POST', `/vms/${encodeURIComponent(name)}/poweroff`);
  }

  /** DELETE /api/v1/vms/NAME (`unregistervm`). */
  unregisterVm(name: string): Promise<void> {
    return this.call<void>('DELETE', `/vms/${encodeURIComponent(name)}`);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.host.adminToken !== undefined) headers.authorization = `Bearer ${this.host.adminToken}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.host.url}/api/v1${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    } catch (err) {
      throw new TestingError('host_refused', `cannot reach the host at ${this.host.url}: ${(err as Error).message}`, { cause: err });
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const error = (json as ApiErrorView | undefined)?.error;
      throw new TestingError(
        'host_refused',
        `${method} ${path}: ${error?.message ?? `HTTP ${res.status}`}`,
        error?.code !== undefined ? { apiCode: error.code } : {},
      );
    }
    return json as T;
  }
}
