/**
 * Error values shared by both modes. Every failure the product expects carries a
 * stable `code`, so callers branch on codes, never on message text; web logs any
 * other thrown value (a bug) as `ERR_INTERNAL`. Messages are written for the
 * operator who reads them. Security: errors end up in logs, so whoever builds a
 * message keeps tokens, passwords and request headers out of it; nothing here
 * filters them. A library's message about input it could not parse may quote
 * that input, so such errors are described by position (jsonErrorPosition), not
 * passed through describeError.
 */

/** Stable error codes; part of the log contract, documented in docs/operations.md. */
export type ErrorCode =
  | "ERR_USAGE"
  | "ERR_CONFIG"
  | "ERR_AUTH"
  | "ERR_AUTH_UNAVAILABLE"
  | "ERR_EVENT_INVALID"
  | "ERR_IMAGE_NOT_ALLOWED"
  | "ERR_PUBLISH_FAILED"
  | "ERR_NO_SUBSCRIBER"
  | "ERR_REPLAY_IN_PROGRESS"
  | "ERR_KUBE"
  | "ERR_STATUS_CORRUPT"
  | "ERR_INTERNAL";

/** The one error class of the product: a code, a one-line message, the library error as cause. */
export class AppError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AppError";
    this.code = code;
  }
}

/** A configuration or usage error listing every problem at once (exit code 2). */
export class ConfigError extends AppError {
  readonly problems: readonly string[];

  constructor(code: "ERR_USAGE" | "ERR_CONFIG", problems: readonly string[]) {
    super(code, problems.join("; "));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/**
 * An authentication or authorization failure. `reason` is a short machine-readable
 * tag for metrics, `detail` is for the log only: neither ever reaches the caller,
 * and neither may contain the token.
 */
export class AuthError extends AppError {
  readonly reason: string;

  constructor(reason: string, detail: string, options?: { cause?: unknown }) {
    super("ERR_AUTH", detail, options);
    this.name = "AuthError";
    this.reason = reason;
  }
}

/**
 * Returns a short, single-line description of any thrown value, for logs. It
 * shortens but does not redact: only pass errors whose message cannot quote
 * secret input.
 */
export function describeError(err: unknown): string {
  if (err instanceof Error) return oneLine(err.message || err.name);
  return oneLine(String(err));
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim().slice(0, 500);
}

/**
 * Where a JSON parser (JSON.parse or parseStrictJson) stopped, as " at offset N",
 * or "" when its message says no position. Security: the parser's own message
 * may quote the document, which can hold a secret; this never returns any of it.
 */
export function jsonErrorPosition(err: unknown): string {
  const message = err instanceof Error ? err.message : "";
  const m = /\b(?:at offset|at position) (\d{1,9})\b/.exec(message);
  return m ? ` at offset ${m[1]}` : "";
}
