// The order in which the host changes memory limits under its pool cgroup:
// pure, so that "the children's limits never sum above the parent's" is
// proven by unit tests, not by hoping the writes land in a lucky order.
import { CgroupError } from './errors.js';

/** One limit write: `name` null is the parent (the pool cgroup); bytes null is no limit. */
export interface LimitStep {
  name: string | null;
  fromBytes: number | null;
  toBytes: number | null;
}

/** The limits of the parent and its children, now or wanted. */
export interface LimitState {
  parentBytes: number | null;
  children: ReadonlyMap<string, number | null>;
}

/** The sum of limits; Infinity if any child is unlimited. */
export function sumOfLimits(children: Iterable<number | null>): number {
  let sum = 0;
  for (const b of children) sum += b === null ? Infinity : b;
  return sum;
}

const le = (a: number | null, b: number | null) => (b === null ? true : a === null ? false : a <= b);

/**
 * The steps from `now` to `wanted` (children absent from `wanted` keep their
 * limit): a parent that grows grows first, then every child that shrinks,
 * then every child that grows, then a parent that shrinks. At every step the
 * children's sum stays within the parent whenever the wanted state is within
 * it (and never rises while the current state is over it). Throws over_parent
 * if the wanted children's limits sum above the wanted parent limit.
 */
export function planLimits(now: LimitState, wanted: { parentBytes?: number | null; children: ReadonlyMap<string, number | null> }): LimitStep[] {
  const parentTo = wanted.parentBytes === undefined ? now.parentBytes : wanted.parentBytes;
  const final = new Map(now.children);
  for (const [name, bytes] of wanted.children) final.set(name, bytes);
  const finalSum = sumOfLimits(final.values());
  if (parentTo !== null && finalSum > parentTo) {
    const mib = (b: number) => (Number.isFinite(b) ? `${Math.ceil(b / 1048576)} MiB` : 'no limit');
    // Name the cgroups with no limit: one the host did not make (a stranger
    // under its parent) is otherwise invisible in the refusal.
    const unlimited = [...final].filter(([, b]) => b === null).map(([n]) => n);
    const which =
      unlimited.length === 0
        ? ''
        : ` (no limit on ${unlimited.slice(0, 5).join(', ')}${unlimited.length > 5 ? ', …' : ''}: give each a limit, or move it out from under the pool cgroup)`;
    throw new CgroupError('over_parent', `the guests' memory limits would sum to ${mib(finalSum)}${which}, above the pool cgroup's ${mib(parentTo)}`);
  }
  const lowers: LimitStep[] = [];
  const raises: LimitStep[] = [];
  for (const [name, toBytes] of wanted.children) {
    const fromBytes = now.children.has(name) ? now.children.get(name)! : null;
    if (fromBytes === toBytes && now.children.has(name)) continue;
    // A new child (no cgroup limit yet) counts as a raise: it adds to the sum.
    const step = { name, fromBytes: now.children.has(name) ? fromBytes : null, toBytes };
    if (now.children.has(name) && le(toBytes, fromBytes)) lowers.push(step);
    else raises.push(step);
  }
  // Biggest cut first: the room appears as early as possible.
  lowers.sort((a, b) => gap(b) - gap(a));
  const steps: LimitStep[] = [];
  const parentGrows = parentTo !== now.parentBytes && !le(parentTo, now.parentBytes);
  if (parentGrows) steps.push({ name: null, fromBytes: now.parentBytes, toBytes: parentTo });
  steps.push(...lowers, ...raises);
  if (parentTo !== now.parentBytes && !parentGrows) steps.push({ name: null, fromBytes: now.parentBytes, toBytes: parentTo });
  return steps;
}

function gap(step: LimitStep): number {
  return (step.fromBytes ?? Number.MAX_SAFE_INTEGER) - (step.toBytes ?? Number.MAX_SAFE_INTEGER);
}
