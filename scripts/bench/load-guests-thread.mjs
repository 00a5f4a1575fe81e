// The worker thread's entry: Node 20 does not hand tsx's loader (--import
// tsx) to worker threads, so the thread registers it before loading the
// TypeScript of load-guests.ts.
import { register } from 'tsx/esm/api';

register();
await import('./load-guests.ts');
