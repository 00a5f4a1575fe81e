// The logger the library accepts: pino's shape, so main passes its pino
// logger (or a child) and the library never makes one of its own.

/** One log method: structured fields first, then the message (pino's order). */
export type LogMethod = (fields: Record<string, unknown>, message: string) => void;

/** The subset of a pino logger the agent uses. */
export interface AgentLogger {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
}

/** A logger that drops everything (the library's default: it never logs on its own). */
export const silentLogger: AgentLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};
