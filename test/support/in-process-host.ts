// A host started in the test's own process (startHost), with the settings
// every such test wants: one place for them, instead of a copy per test.
import { startHost, type HostGuestsOptions, type HostHandle, type StartHostOptions } from '@memballoon/host';

/**
 * The guests options of a test host: the test's PATH, and its NODE_OPTIONS so
 * that the agents it starts load the packages from src/ as the test does.
 */
export function testGuests(extra: Partial<HostGuestsOptions> = {}): HostGuestsOptions {
  return {
    pathEnv: process.env.PATH ?? '/usr/bin:/bin',
    ...(process.env.NODE_OPTIONS ? { nodeOptions: process.env.NODE_OPTIONS } : {}),
    ...extra,
  };
}

/**
 * startHost on a free port (port 0) with no policy loop, no dashboard and no
 * page fusion, unless the options say otherwise: a test drives every change.
 */
export function startTestHost(options: StartHostOptions): Promise<HostHandle> {
  return startHost({ listenPort: 0, policyIntervalMs: 0, dashboard: false, fusion: false, ...options });
}

/** Creates each VM with memoryMib; its guest token by name. */
export function createVms(host: HostHandle, names: readonly string[], memoryMib: number): Map<string, string> {
  return new Map(names.map((name) => [name, host.service.createVm({ name, memoryMib }).token]));
}

/** An admin API answer: the status, and the body parsed (undefined when empty). */
export interface ApiAnswer {
  status: number;
  json: any;
}

/** Calls the admin API of an in-process host with its admin token (a JSON body when given). */
export async function adminApi(host: Pick<HostHandle, 'url' | 'adminToken'>, method: string, path: string, body?: unknown): Promise<ApiAnswer> {
  const res = await fetch(`${host.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${host.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}
