// One error class for the testing toolkit, with a closed set of codes: a test
// that catches it can tell a refused start from a balloon that stopped short.
import { HostError } from '@memballoon/host';

/** Every code a TestingError can carry. */
export const TESTING_ERROR_CODES = [
  /** The host refused a request (its API code and message are in the message and `apiCode`). */
  'host_refused',
  /** The balloon stopped short of its target (the guest's floor, pressure, no memory): `reason` says why. */
  'balloon_short',
  /** The guest stopped running (its command exited, or it was powered off) while a call waited for it. */
  'guest_stopped',
  /** A wait ran past its deadline. */
  'timeout',
  /** The options are wrong (a size, a command). */
  'invalid_argument',
] as const;

/** One of the toolkit's error codes. */
export type TestingErrorCode = (typeof TESTING_ERROR_CODES)[number];

/** The toolkit's only error type. */
export class TestingError extends Error {
  override readonly name = 'TestingError';
  /** The admin API's error code, when the host refused. */
  readonly apiCode: string | undefined;
  /** Why a balloon stopped short (the guest's shortfall reason), for 'balloon_short'. */
  readonly reason: string | undefined;

  constructor(
    readonly code: TestingErrorCode,
    message: string,
    options: { cause?: unknown; apiCode?: string; reason?: string } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.apiCode = options.apiCode;
    this.reason = options.reason;
  }

  /** Normalises anything thrown into a TestingError (kept as is when it already is one). */
  static from(err: unknown): TestingError {
    if (err instanceof TestingError) return err;
    // The admin client's refusal (or an unreachable host): its API code goes along.
    if (err instanceof HostError) return new TestingError('host_refused', err.message, { cause: err, apiCode: err.code });
    return new TestingError('host_refused', err instanceof Error ? err.message : String(err), { cause: err });
  }
}
