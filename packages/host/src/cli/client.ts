// A small client of the admin API, for balloonctl and for libraries
// (@memballoon/testing): JSON in and out, every failure a HostError (the
// package's one error type) with a one-line message and the API's code. Its
// messages name no command-line flag: the caller knows how it was configured
// and adds its own hints (balloonctl: ctl-hints.ts). It speaks node:http(s) rather
// than fetch: fetch loads undici on first use, which costs more start-up time
// than the rest of balloonctl together (issue 15: a CLI that answers at once).
import type { IncomingMessage, RequestOptions } from 'node:http';
import { HostError, isHostErrorCode } from '../errors.js';
import type { MetricRow } from '../metrics/query.js';
import type { ApiErrorView, HostView, VmView } from '../service/views.js';

/** The admin API of one host. */
export class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly adminToken?: string,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: { status: number; statusText: string; text: string };
    try {
      res = await send(
        new URL(`${this.baseUrl}/api/v1${path}`),
        {
          method,
          headers: {
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            ...(this.adminToken === undefined ? {} : { authorization: `Bearer ${this.adminToken}` }),
          },
        },
        body === undefined ? undefined : JSON.stringify(body),
      );
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (err instanceof HostError) throw err;
      throw new HostError('unreachable', `cannot reach the host at ${this.baseUrl} (${e.code ?? e.message}): is balloon-host running there?`, { cause: err });
    }
    const text = res.text;
    let value: unknown;
    try {
      value = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new HostError('internal', `the host at ${this.baseUrl} answered ${res.status} with something that is not JSON`);
    }
    if (res.status < 200 || res.status > 299) {
      const e = (value as ApiErrorView | undefined)?.error;
      const message = e?.message ?? `the host answered ${res.status} ${res.statusText}`;
      // A code this balloonctl does not know (a newer host) is still an error: internal.
      const code = isHostErrorCode(e?.code) ? e.code : res.status === 401 ? 'unauthorized' : 'internal';
      if (res.status !== 401) throw new HostError(code, message);
      // The host's own words are the cause: a caller that knows where it looked for the token says so instead.
      const said = new Error(message);
      throw new HostError(
        code,
        this.adminToken === undefined
          ? `the host at ${this.baseUrl} needs the admin token and none was given (${message})`
          : `the host at ${this.baseUrl} refused the admin token (${message})`,
        { cause: said },
      );
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

  /** POST /vms/:name/startvm: the host starts the VM's agent wrapping `command`. */
  startvm(name: string, body: { command: string[]; type?: string; user?: string }): Promise<VmView> {
    return this.call('POST', `/vms/${encodeURIComponent(name)}/startvm`, body);
  }

  /** POST /vms/:name/poweroff | acpipowerbutton */
  powerAction(name: string, action: 'poweroff' | 'acpipowerbutton'): Promise<VmView> {
    return this.call('POST', `/vms/${encodeURIComponent(name)}/${action}`);
  }

  /** GET /metrics?vm=&metric= */
  metrics(vm?: string, metric?: string): Promise<MetricRow[]> {
    const q = new URLSearchParams();
    if (vm !== undefined) q.set('vm', vm);
    if (metric !== undefined) q.set('metric', metric);
    const qs = q.toString();
    return this.call('GET', `/metrics${qs ? `?${qs}` : ''}`);
  }
}

/** One HTTP(S) request with the whole answer read as text; https is loaded only for https URLs. */
async function send(url: URL, options: RequestOptions, body: string | undefined): Promise<{ status: number; statusText: string; text: string }> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new HostError('usage', `not an http(s) URL: ${url.protocol}`);
  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request(url, options, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
