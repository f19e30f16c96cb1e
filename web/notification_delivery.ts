/**
 * Delivers one webhook notification: a POST to the operator's URL, each
 * attempt bounded in time, retried with doubling waits when the receiver may
 * recover (408, 429, 5xx, network errors, timeouts), stopped at once on
 * shutdown. Trusts the URL (the operator configured it) but not the receiver:
 * its redirects are refused, its answer's body is never read, its slowness
 * is cut off. Security: the URL may carry a secret in userinfo, path or query
 * (a Slack webhook's path is its secret) and Deno's fetch errors quote it, so
 * every failure is reported as one of a few fixed texts, never the error's.
 */

import { sleep as abortableSleep } from "../lib/backoff.ts";

/** What to POST: the exact body and headers the receiver gets. */
export interface DeliveryRequest {
  body: string;
  headers: Record<string, string>;
}

/** How hard to try; every field is optional. */
export interface DeliveryOptions {
  /** Bound on each attempt: connect, send, and the answer's head (default 5000 ms). */
  timeoutMs?: number;
  /** Tries in all (default 3): a receiver that fails twice gets the third. */
  attempts?: number;
  /** Wait before retry n (1-based): default 1 s, then 2 s, doubling, capped at 10 s, with no jitter (tests inject sleep). */
  backoffMs?: (retry: number) => number;
  /** Injectable for tests. */
  fetch?: typeof fetch;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Aborted at shutdown: stops waiting and retrying at once. */
  signal?: AbortSignal;
  /** Called after each failed attempt (for a log line), with the one-line reason. */
  onAttemptFailed?: (attempt: number, reason: string) => void;
}

/** The outcome of a delivery; `reason` is a fixed text that never quotes the URL. */
export type DeliveryResult =
  | { ok: true; attempts: number; status: number }
  | { ok: false; attempts: number; reason: string; retryable: boolean };

const DEFAULT_TIMEOUT_MS = 5000;
const MAX_TIMEOUT_MS = 120_000;
const DEFAULT_ATTEMPTS = 3;
const MAX_ATTEMPTS = 10;
const MAX_BACKOFF_MS = 60_000;
const STOPPED = "stopped";

type Failure = { ok: false; reason: string; retryable: boolean };
type Attempt = { ok: true; status: number } | Failure;

interface Settings {
  timeoutMs: number;
  attempts: number;
  backoffMs: (retry: number) => number;
  fetch: typeof fetch;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
  onAttemptFailed: (attempt: number, reason: string) => void;
}

/** 1 s, 2 s, 4 s, 8 s, then 10 s: a receiver restarting gets time, a queue does not stall. */
function defaultBackoffMs(retry: number): number {
  return Math.min(10_000, 1000 * 2 ** Math.min(retry - 1, 20));
}

/** `value` as an integer in [min, max], or `fallback` when it is not a number. */
function clamp(value: number | undefined, fallback: number, min: number, max: number): number {
  if (typeof value !== "number" || Number.isNaN(value)) return fallback;
  return Math.min(max, Math.max(min, Math.floor(value)));
}

/** Options checked once: every number bounded, every hook present. */
function resolveSettings(options: DeliveryOptions): Settings {
  const backoff = options.backoffMs ?? defaultBackoffMs;
  return {
    timeoutMs: clamp(options.timeoutMs, DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS),
    attempts: clamp(options.attempts, DEFAULT_ATTEMPTS, 1, MAX_ATTEMPTS),
    // A custom backoff that returns NaN or Infinity must not stall delivery forever.
    backoffMs: (retry) => clamp(backoff(retry), 0, 0, MAX_BACKOFF_MS),
    fetch: options.fetch ?? fetch,
    sleep: options.sleep ?? abortableSleep,
    signal: options.signal,
    onAttemptFailed: options.onAttemptFailed ?? (() => {}),
  };
}

/** What an answer's status means for this delivery. */
function classifyStatus(response: Response): Attempt {
  const status = response.status;
  // Security: a redirect is never followed, so nothing goes to an address the
  // operator did not configure. A browser-style fetch reports it as status 0.
  if (response.type === "opaqueredirect") return fail("redirect not followed", false);
  if (status >= 300 && status < 400) return fail(`redirect not followed (HTTP ${status})`, false);
  if (status >= 200 && status < 300) return { ok: true, status };
  // RFC 9110 §15.5.9 (408) and RFC 6585 §4 (429) invite a retry, as does a 5xx.
  const retryable = status === 408 || status === 429 || status >= 500;
  return fail(`HTTP ${status}`, retryable);
}

function fail(reason: string, retryable: boolean): Failure {
  return { ok: false, reason, retryable };
}

/**
 * Fixed texts for fetch's errors (Deno 2's messages, rustls's certificate
 * errors), first match wins. Patterns only look at the text; nothing from it
 * is ever copied.
 */
const ERROR_TEXTS: ReadonlyArray<readonly [RegExp, string, boolean]> = [
  [/^(NotCapable|PermissionDenied)\b/, "network access not permitted", false],
  [/Requests to port \d+ are blocked/i, "port blocked by fetch", false],
  [/scheme .* not supported/i, "URL scheme not supported", false],
  [/NotValidForName/, "TLS handshake failed: certificate does not match the host", true],
  [/\bExpired\b|NotValidYet/, "TLS handshake failed: certificate expired or not yet valid", true],
  [
    /invalid peer certificate|UnknownIssuer/i,
    "TLS handshake failed: certificate not trusted",
    true,
  ],
  [/tls handshake|received corrupt message|fatal alert/i, "TLS handshake failed", true],
  [/dns error|failed to lookup address/i, "DNS lookup failed", true],
  [/connection refused/i, "connection refused", true],
  [/connection reset/i, "connection reset", true],
  [/timed out/i, "connection timed out", true],
  [/network is unreachable|no route to host/i, "network unreachable", true],
  [/connection closed|unexpected eof/i, "connection closed before an answer", true],
  [/invalid HTTP|invalid status|invalid header|too large/i, "invalid HTTP answer", true],
  [/client error \(Connect\)/i, "connection failed", true],
];

/**
 * The error's name and messages (with its cause's), for matching only. The
 * URL is cut out first: a path such as /Expired must not read as a certificate error.
 */
function errorText(err: unknown, url: URL): string {
  const describe = (e: unknown) => e instanceof Error ? `${e.name} ${e.message}` : "";
  const text = err instanceof Error ? `${describe(err)} ${describe(err.cause)}` : "";
  // Deno prints the URL without its userinfo, which it sends as Authorization.
  const bare = new URL(url.href);
  bare.username = "";
  bare.password = "";
  return text.replaceAll(url.href, "<url>").replaceAll(bare.href, "<url>");
}

/** A failed fetch as a fixed text. Security: never copies the error (it quotes the URL). */
function classifyError(err: unknown, url: URL, timedOut: boolean, settings: Settings): Failure {
  if (settings.signal?.aborted) return fail(STOPPED, true);
  if (timedOut) return fail(`timed out after ${settings.timeoutMs} ms`, true);
  const text = errorText(err, url);
  const match = ERROR_TEXTS.find(([pattern]) => pattern.test(text));
  return match ? fail(match[1], match[2]) : fail("request failed", true);
}

/** One POST, bounded by the timeout and the shutdown signal; never rejects. */
async function attemptOnce(url: URL, request: RequestInit, settings: Settings): Promise<Attempt> {
  const timeout = AbortSignal.timeout(settings.timeoutMs);
  const signal = settings.signal ? AbortSignal.any([timeout, settings.signal]) : timeout;
  try {
    const response = await settings.fetch(url.href, { ...request, signal });
    // The answer's body is never read: a receiver streaming forever cannot hold us.
    await response.body?.cancel().catch(() => {});
    return classifyStatus(response);
  } catch (err) {
    return classifyError(err, url, timeout.aborted, settings);
  }
}

/** The request as fetch takes it, or a fixed text when a header is malformed. */
function buildRequest(request: DeliveryRequest): RequestInit | Failure {
  try {
    // Security: Headers' own error quotes the offending value, which may be a token.
    const headers = new Headers(request.headers);
    return { method: "POST", body: request.body, headers, redirect: "manual" };
  } catch {
    return fail("invalid request header", false);
  }
}

/** Reports a failed attempt; a throwing logger must not break delivery. */
function report(settings: Settings, attempt: number, reason: string): void {
  try {
    settings.onAttemptFailed(attempt, reason);
  } catch {
    // The outcome is still returned; only the log line is lost.
  }
}

/** Waits before retry `retry`; returns early when the shutdown signal aborts. */
async function wait(settings: Settings, retry: number): Promise<void> {
  try {
    await settings.sleep(settings.backoffMs(retry), settings.signal);
  } catch {
    // A sleep that rejects on abort, or a throwing backoff: the loop checks the signal next.
  }
}

/** POSTs the request to `url`; resolves (never rejects) with the outcome. */
export async function deliverNotification(
  url: URL,
  request: DeliveryRequest,
  options: DeliveryOptions = {},
): Promise<DeliveryResult> {
  const settings = resolveSettings(options);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { ok: false, attempts: 0, reason: "URL scheme must be http or https", retryable: false };
  }
  const init = buildRequest(request);
  if ("ok" in init) return { ...init, attempts: 0 };
  for (let attempt = 1;; attempt++) {
    if (settings.signal?.aborted) return { ...fail(STOPPED, true), attempts: attempt - 1 };
    const outcome = await attemptOnce(url, init, settings);
    if (outcome.ok) return { ...outcome, attempts: attempt };
    report(settings, attempt, outcome.reason);
    if (!outcome.retryable || attempt >= settings.attempts) {
      return { ...outcome, attempts: attempt };
    }
    if (!settings.signal?.aborted) await wait(settings, attempt);
  }
}
