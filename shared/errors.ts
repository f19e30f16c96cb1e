/**
 * Error values shared by both modes. Every failure the product expects carries a
 * stable `code`, so callers branch on codes, never on message text; web logs any
 * other thrown value (a bug) as `ERR_INTERNAL`. Messages are written for the
 * operator who reads them. Security: errors end up in logs, so whoever builds a
 * message keeps tokens, passwords and request headers out of it; nothing here
 * filters them. A library's message about input it could not parse may quote
 * that input, so such errors are described by position (lib/error_text.ts).
 */

/**
 * Stable error codes with the line docs/operations.md shows for each (`deno
 * task docs` writes that table; tests/docs_test.ts fails on drift). Part of the
 * log contract: callers and operators branch on these, never on message text.
 */
export const ERROR_CODES = {
  ERR_USAGE: "bad command line (exit code 2)",
  ERR_CONFIG: "invalid configuration (exit code 2, or 1 when found while starting)",
  ERR_AUTH: "authentication or authorization denied (`403`); the `reason` says which",
  ERR_AUTH_UNAVAILABLE: "the issuer's keys cannot be had (`503`)",
  ERR_EVENT_INVALID: "the body is not a valid event (`400`)",
  ERR_IMAGE_NOT_ALLOWED: "the image is outside `ALLOWED_IMAGE_PREFIX` (`400`)",
  ERR_PUBLISH_FAILED: "Valkey failed or holds an unreadable replay record (`503`)",
  ERR_NO_SUBSCRIBER: "no worker cluster is known: nothing could ever handle the event (`503`)",
  ERR_REPLAY_IN_PROGRESS: "the first request with this token had not finished (`409`)",
  ERR_KUBE: "the Kubernetes API or the kubeconfig failed",
  ERR_STATUS_CORRUPT:
    "a status record in Valkey is not one the program writes (logged; read as unreadable)",
  ERR_SYSTEM:
    "the operating system refused while starting (a listen address in use, a file that may not be read)",
  ERR_INTERNAL: "a bug: an error that is not one of the above (`500`); please report it",
} as const;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** The Markdown table of docs/operations.md: every code with its line. */
export function renderErrorCodeTable(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, doc]) => `| \`${code}\` | ${doc} |`);
  return ["| code | meaning |", "| --- | --- |", ...rows].join("\n");
}

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
