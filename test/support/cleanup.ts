// Teardown that finishes: every step runs even when an earlier one throws (a
// process that will not stop, a host that fails to close), so a failed test
// never leaves its temp dirs, cgroups or processes behind; then the first
// error is thrown, so the failure is still seen.

/** Runs each step in order (undefined ones are skipped), all of them even after one throws; then throws the first error. */
export async function cleanUp(...steps: Array<(() => unknown) | undefined>): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    if (step === undefined) continue;
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanup steps failed`);
}
