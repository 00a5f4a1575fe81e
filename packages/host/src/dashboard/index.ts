// The dashboard the host serves at `/`: one page, its assets, uPlot, and the
// server-sent event stream that keeps it live. The host mounts it by offering
// every request to `handle` before its own routes. See README.md next to this
// file for what the page shows and why.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HostView, VmView } from '../service/views.js';
import { sendError } from '../api/http.js';
import { HostError } from '../errors.js';
import { loadAssets } from './assets.js';
import { EventStream, type EventStreamOptions } from './events.js';
import { VmHistory, type HistoryPointVisitor } from './history.js';

/** Least time between two history samples: the guests' stats cadence (a sample takes one snapshot for all VMs). */
export const SAMPLE_INTERVAL_MS = 1000;

export type { SnapshotEvent, EventStreamOptions } from './events.js';
export { VmHistory, type HistoryEvent, type HistoryPointVisitor, type VmHistorySeries, type VmHistoryOptions } from './history.js';

/** The URL path of the dashboard's event stream. */
export const EVENTS_PATH = '/api/v1/events';

/** What the dashboard needs from the host. */
export interface DashboardOptions extends EventStreamOptions {
  /** The host's current state; called on connect and at most once per coalescing interval. */
  snapshot: () => { host: HostView; vms: VmView[] };
  /** Calls `listener` whenever the state changed; returns the unsubscribe function. */
  subscribe: (listener: () => void) => () => void;
  /** The charts' history the host keeps (default: a new VmHistory, 900 points per VM, 15 minutes). */
  history?: VmHistory;
  /**
   * Each running VM's charted figures for the history (VmHistory.sample's
   * source). Default: taken from `snapshot()`, which builds every VM's view
   * for four numbers each (the host passes a cheaper source).
   */
  historySource?: (visit: HistoryPointVisitor) => void;
}

/** The mounted dashboard. */
export interface Dashboard {
  /** Serves the request if it is the dashboard's (returns true), else leaves it alone (returns false). */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Ends the event streams (call before the HTTP server's close, which waits for open connections). */
  close(): void;
}

// The page talks only to its own origin; data reaches the DOM as text, never as HTML.
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** Creates the dashboard: reads its assets (throws if one is missing) and subscribes to the host's changes. */
export function createDashboard(options: DashboardOptions): Dashboard {
  const assets = loadAssets();
  const history = options.history ?? new VmHistory();
  const events = new EventStream(options.snapshot, { ...options, historyEvent: () => history.event(Date.now()) });
  // Trailing sampling: a change schedules one sample SAMPLE_INTERVAL_MS later,
  // so the newest figures are always recorded and a busy host takes at most
  // one snapshot a second for the history.
  let sampleTimer: NodeJS.Timeout | undefined;
  const sample = (): void => {
    sampleTimer = undefined;
    try {
      if (options.historySource) history.sample(options.historySource, Date.now());
      else history.record(options.snapshot().vms, Date.now());
    } catch {
      // No snapshot now: the next change samples again.
    }
  };
  sample();
  const unsubscribe = options.subscribe(() => {
    events.changed();
    if (sampleTimer === undefined) {
      sampleTimer = setTimeout(sample, SAMPLE_INTERVAL_MS);
      sampleTimer.unref();
    }
  });

  return {
    handle(req, res) {
      const path = pathOf(req.url);
      if (path === EVENTS_PATH) {
        if (req.method === 'GET') events.serve(req, res);
        else methodNotAllowed(res, 'GET');
        return true;
      }
      const asset = assets.get(path === '/index.html' ? '/' : path);
      if (!asset) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        methodNotAllowed(res, 'GET, HEAD');
        return true;
      }
      const headers = { ...SECURITY_HEADERS, etag: asset.etag, 'cache-control': 'no-cache' };
      if (req.headers['if-none-match'] === asset.etag) {
        res.writeHead(304, headers);
        res.end();
        return true;
      }
      res.writeHead(200, { ...headers, 'content-type': asset.contentType, 'content-length': asset.body.length });
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return true;
    },
    close() {
      unsubscribe();
      clearTimeout(sampleTimer);
      events.close();
    },
  };
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  return q === -1 ? raw : raw.slice(0, q);
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  sendError(res, new HostError('method_not_allowed', `use ${allow}`), { allow });
}
