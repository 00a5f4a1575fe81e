// The typed facade of the memballoon wire protocol: the only public surface of
// this package. Nothing here touches a socket.
export * from './wire.js';
export * from './errors.js';
export * from './types.js';
export * as bodies from './bodies.js';
export { decodeFrame, encodeFrame, expectBody, FrameEncoder, SeqTracker, vmNameProblem, WIRE_NUMBERS, type DecodeOptions } from './codec.js';
