// The JSON text of a VmView, written field by field: the same bytes as
// JSON.stringify(view) for every view build-views.ts makes (a property test
// compares the two over many views). Every PUT of a balloon answers with the
// VM's full view (the API contract), and at 1,000 guests JSON.stringify's
// generic walk of it (a property lookup, a type check and a key copy per
// field) was the largest single item of the PUT beyond the null host.
// Fields are written in the order build-views.ts creates them, which is the
// order JSON.stringify follows; a field it leaves undefined is left out, as
// JSON.stringify does.
import type { BalloonView, GuestStatsView, VmView } from './views.js';

// Printable ASCII without `"` and `\`: JSON.stringify writes such a string as
// it is, between quotes. Anything else (VM names are plain; a cgroup path or
// a command may not be) goes through JSON.stringify itself.
const PLAIN_STRING = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function str(s: string): string {
  return PLAIN_STRING.test(s) ? `"${s}"` : JSON.stringify(s);
}

// JSON has no NaN or Infinity: JSON.stringify writes null, and String() of a
// finite number is JSON.stringify's text of it (-0 included: "0").
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

function balloonJson(b: BalloonView): string {
  return `{"targetMib":${num(b.targetMib)},"actualMib":${num(b.actualMib)},"lockedMib":${num(b.lockedMib)},"handedOffMib":${num(b.handedOffMib)},"state":${str(b.state)},"reason":${str(b.reason)},"lock":${str(b.lock)},"generation":${num(b.generation)}}`;
}

function statsJson(s: GuestStatsView): string {
  return (
    `{"totalMib":${num(s.totalMib)},"freeMib":${num(s.freeMib)},"availableMib":${num(s.availableMib)},"cacheMib":${num(s.cacheMib)},` +
    `"sharedMib":${num(s.sharedMib)},"swapInMib":${num(s.swapInMib)},"swapOutMib":${num(s.swapOutMib)},"majorFaults":${num(s.majorFaults)},` +
    `"minorFaults":${num(s.minorFaults)},"psiSomeAvg10Percent":${num(s.psiSomeAvg10Percent)},"psiFullAvg10Percent":${num(s.psiFullAvg10Percent)},` +
    `"agentRssMib":${num(s.agentRssMib)},"domain":${str(s.domain)},"receivedAtMs":${num(s.receivedAtMs)}}`
  );
}

/** JSON.stringify(view), for a view made by build-views.ts's vmView, without the generic walk. */
export function vmViewJson(view: VmView): string {
  let out =
    `{"name":${str(view.name)},"state":${str(view.state)},"memoryMib":${num(view.memoryMib)},"defaultBalloonMib":${num(view.defaultBalloonMib)},` +
    `"pageFusion":${view.pageFusion},"balloonPolicy":${str(view.balloonPolicy)},"memoryMinMib":${num(view.memoryMinMib)},` +
    `"balloonMaxMib":${view.balloonMaxMib === null ? 'null' : num(view.balloonMaxMib)},"memoryWeight":${num(view.memoryWeight)},` +
    `"memoryBufferPercent":${num(view.memoryBufferPercent)}`;
  if (view.balloon !== undefined) out += `,"balloon":${balloonJson(view.balloon)}`;
  if (view.pid !== undefined) out += `,"pid":${num(view.pid)}`;
  if (view.heldMib !== undefined) out += `,"heldMib":${num(view.heldMib)}`;
  if (view.stats !== undefined) out += `,"stats":${statsJson(view.stats)}`;
  if (view.sharableMib !== undefined) out += `,"sharableMib":${num(view.sharableMib)}`;
  if (view.sharedMib !== undefined) out += `,"sharedMib":${num(view.sharedMib)}`;
  if (view.startedAtMs !== undefined) out += `,"startedAtMs":${num(view.startedAtMs)}`;
  if (view.starting !== undefined) out += ',"starting":true';
  // Rare (guests the host owns) and free-form: JSON.stringify's own text.
  if (view.managed !== undefined) out += `,"managed":${JSON.stringify(view.managed)}`;
  return `${out}}`;
}
