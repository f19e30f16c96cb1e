/**
 * Structured JSON logging: one object per line on stdout, filtered by level.
 * This module is the only code that writes to stdout. Callers pass plain context
 * fields; nothing here inspects them, so callers must never pass secrets.
 */

/** Log levels in increasing severity. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of LOG_LEVELS. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Context fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** A leveled structured logger; `child` adds fixed fields to every line. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

/** Options for createLogger. */
export interface LoggerOptions {
  level: LogLevel;
  /** Fields on every line, e.g. `{ mode: "web" }`. */
  fields?: LogFields;
  /** Receives each finished line without the newline; defaults to stdout. */
  write?: (line: string) => void;
  now?: () => Date;
}

const encoder = new TextEncoder();

function writeStdout(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

/** Creates a logger writing one JSON object per line. */
export function createLogger(options: LoggerOptions): Logger {
  const min = LOG_LEVELS.indexOf(options.level);
  const write = options.write ?? writeStdout;
  const now = options.now ?? (() => new Date());
  const build = (base: LogFields): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
      if (LOG_LEVELS.indexOf(level) < min) return;
      const line = { ts: now().toISOString(), level, msg, ...base, ...fields };
      write(plain(line) ? JSON.stringify(line) : JSON.stringify(line, jsonSafe));
    };
    return {
      debug: (msg, fields) => emit("debug", msg, fields),
      info: (msg, fields) => emit("info", msg, fields),
      warn: (msg, fields) => emit("warn", msg, fields),
      error: (msg, fields) => emit("error", msg, fields),
      child: (fields) => build({ ...base, ...fields }),
    };
  };
  return build(options.fields ?? {});
}

// A replacer makes JSON.stringify call back into JS for every value; a line of
// strings, numbers, booleans and arrays of them (every request line) needs none.
function plain(line: LogFields): boolean {
  for (const key in line) {
    const value = line[key];
    if (typeof value === "bigint") return false;
    if (typeof value !== "object" || value === null) continue;
    if (!Array.isArray(value)) return false;
    for (const item of value) {
      if (typeof item === "bigint" || (typeof item === "object" && item !== null)) return false;
    }
  }
  return true;
}

// BigInt and Error values would otherwise throw or serialise as {}.
function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return value.message;
  return value;
}
