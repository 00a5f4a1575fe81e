// A small client of the admin API for balloonctl: JSON in and out, every
// failure a CtlError with a one-line message.
import type { ApiErrorView, HostView, VmView } from '../service/views.js';

/** A failure of a balloonctl command: one line for stderr, and the API's code if any. */
export class CtlError extends Error {
  override readonly name = 'CtlError';
  constructor(
    message: string,
    readonly code = 'error',
  ) {
    super(message);
  }
}

/** The admin API of one host. */
export class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly adminToken?: string,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}/api/v1${path}`, {
        method,
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(this.adminToken === undefined ? {} : { authorization: `Bearer ${this.adminToken}` }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CtlError(`cannot reach the host at ${this.baseUrl} (${cause?.code ?? cause?.message ?? (err as Error).message}): is balloon-host running? (--host URL or MEMBALLOON_URL)`, 'unreachable');
    }
    const text = await res.text();
    let value: unknown;
    try {
      value = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new CtlError(`the host at ${this.baseUrl} answered ${res.status} with something that is not JSON`);
    }
    if (!res.ok) {
      const e = (value as ApiErrorView | undefined)?.error;
      const hint = res.status === 401 ? ' (balloonctl reads the admin token from <data-dir>/admin.token; or pass --admin-token / MEMBALLOON_ADMIN_TOKEN)' : '';
      throw new CtlError(`${e?.message ?? `the host answered ${res.status} ${res.statusText}`}${hint}`, e?.code ?? 'error');
    }
    return value as T;
  }

  /** GET /host */
  host(): Promise<HostView> {
    return this.call('GET', '/host');
  }

  /** GET /vms (running only with `running`). */
  vms(running = false): Promise<VmView[]> {
    return this.call('GET', `/vms${running ? '?running=1' : ''}`);
  }

  /** GET /vms/:name */
  vm(name: string): Promise<VmView> {
    return this.call('GET', `/vms/${encodeURIComponent(name)}`);
  }

  /** POST /vms */
  create(name: string, memoryMib: number): Promise<VmView & { token: string }> {
    return this.call('POST', '/vms', { name, memoryMib });
  }

  /** DELETE /vms/:name */
  unregister(name: string): Promise<void> {
    return this.call('DELETE', `/vms/${encodeURIComponent(name)}`);
  }

  /** PATCH /vms/:name */
  modify(name: string, settings: Record<string, unknown>): Promise<VmView> {
    return this.call('PATCH', `/vms/${encodeURIComponent(name)}`, settings);
  }

  /** PUT /vms/:name/balloon */
  setBalloon(name: string, targetMib: number): Promise<VmView> {
    return this.call('PUT', `/vms/${encodeURIComponent(name)}/balloon`, { targetMib });
  }

  /** GET /metrics?vm=&metric= */
  metrics(vm?: string, metric?: string): Promise<unknown> {
    const q = new URLSearchParams();
    if (vm !== undefined) q.set('vm', vm);
    if (metric !== undefined) q.set('metric', metric);
    const qs = q.toString();
    return this.call('GET', `/metrics${qs ? `?${qs}` : ''}`);
  }
}
