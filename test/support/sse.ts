// A reader of the host's event stream (GET /api/v1/events, server-sent
// events) for tests: the events as they come, each block parsed once.
import { get } from 'node:http';

/** One server-sent event: its type and its data parsed as JSON. */
export interface SseEvent {
  type: string;
  data: unknown;
}

/**
 * Reads the event stream at `url` (the host's base URL) until `enough` says
 * the events so far are enough, then closes it and resolves with them.
 * Rejects on a status other than 200, or if the stream ends first.
 */
export function readEvents(url: string, enough: (events: readonly SseEvent[]) => boolean): Promise<SseEvent[]> {
  return new Promise((resolve, reject) => {
    const events: SseEvent[] = [];
    let done = false;
    const req = get(`${url}/api/v1/events`, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`the event stream answered ${res.statusCode}`));
        return;
      }
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        // Complete blocks only (a block ends with a blank line); a partial one waits for its rest.
        let end = buffer.indexOf('\n\n');
        while (end >= 0 && !done) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const type = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (type !== undefined && data !== undefined) events.push({ type, data: JSON.parse(data) });
          if (enough(events)) {
            done = true;
            req.destroy();
            resolve(events);
          }
          end = buffer.indexOf('\n\n');
        }
      });
      res.on('end', () => {
        if (!done) reject(new Error(`the event stream ended after ${events.length} events`));
      });
    });
    req.on('error', (err) => {
      if (!done) reject(err);
    });
  });
}
