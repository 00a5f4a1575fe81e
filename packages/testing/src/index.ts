// @memballoon/testing: squeeze a process under test. See README.md.
export { launchGuest, UNBOUNDED_WARNING_CODE, type LaunchGuestOptions, type BalloonOptions, type TestGuest } from './guest.js';
export { withMemoryPressure } from './pressure.js';
export { TestingError, TESTING_ERROR_CODES, type TestingErrorCode } from './errors.js';
export type { HostAddress } from './guest.js';
