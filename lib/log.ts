/**
 * Structured JSON logging: one object per line on stdout, filtered by level.
 * This module is the only code that writes to stdout. Callers pass plain context
 * fields; nothing here inspects them, so callers must never pass secrets.
 */

import { setImmediate } from "node:timers";

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
  /** Receives each finished line without the newline; defaults to stdout, a write per line. */
  write?: (line: string) => void;
  /**
   * Takes the lines instead of `write`; flushed after every error line, so an
   * error is never held back behind a buffer (or lost to the exit that often
   * follows it). Warn lines are batched like the rest: a flood of denied
   * requests is a warn line each.
   */
  sink?: LineSink;
  now?: () => Date;
}

const encoder = new TextEncoder();

function writeAll(bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

function writeStdout(line: string): void {
  writeAll(encoder.encode(line + "\n"));
}

/** Where finished lines go when they are written in batches. */
export interface LineSink {
  /** Takes one line, without its newline. */
  write(line: string): void;
  /** Writes every line taken so far before it returns. */
  flush(): void;
}

/** Options for createBatchedSink; the defaults write to stdout. */
export interface BatchedSinkOptions {
  /** Writes all of the bytes before it returns. */
  writeAll?: (bytes: Uint8Array) => void;
  /** Runs the flush once the event loop's current turn is done. */
  schedule?: (flush: () => void) => void;
  /** Characters held before a flush happens at once. */
  maxChars?: number;
}

/**
 * A sink that writes the lines of one event-loop turn together: under load
 * one system call carries the request lines of many requests, instead of a
 * write (and a wake-up of whatever reads the pipe) per line. Lines keep their
 * order; the process's exit paths must call flush (main.ts does).
 */
export function createBatchedSink(options: BatchedSinkOptions = {}): LineSink {
  const out = options.writeAll ?? writeAll;
  const schedule = options.schedule ?? setImmediate;
  const maxChars = options.maxChars ?? 64 * 1024;
  let lines: string[] = [];
  let chars = 0;
  let scheduled = false;
  const flush = () => {
    if (lines.length === 0) return;
    const text = lines.join("\n") + "\n";
    lines = [];
    chars = 0;
    out(encoder.encode(text));
  };
  return {
    write(line) {
      lines.push(line);
      chars += line.length + 1;
      if (chars >= maxChars) flush();
      else if (!scheduled) {
        scheduled = true;
        schedule(() => {
          scheduled = false;
          flush();
        });
      }
    },
    flush,
  };
}

/**
 * Writes what the sink holds on every way the process ends: Deno.exit and a
 * normal end ("unload"), and an uncaught error or rejection (which still ends
 * the process as before: nothing here prevents it).
 */
export function flushAtExit(sink: LineSink, target: EventTarget): void {
  for (const type of ["unload", "error", "unhandledrejection"]) {
    target.addEventListener(type, () => sink.flush());
  }
}

const ERROR = LOG_LEVELS.indexOf("error");

/** Creates a logger writing one JSON object per line. */
export function createLogger(options: LoggerOptions): Logger {
  const min = LOG_LEVELS.indexOf(options.level);
  const write = options.sink?.write ?? options.write ?? writeStdout;
  const flushNow = options.sink?.flush ?? (() => {});
  const now = options.now ?? (() => new Date());
  const build = (base: LogFields): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
      const rank = LOG_LEVELS.indexOf(level);
      if (rank < min) return;
      const line = { ts: now().toISOString(), level, msg, ...base, ...fields };
      write(plain(line) ? JSON.stringify(line) : JSON.stringify(line, jsonSafe));
      if (rank >= ERROR) flushNow();
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
