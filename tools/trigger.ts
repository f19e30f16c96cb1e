/**
 * `deno task trigger <image[:tag]> [--tags a,b] [--url http://127.0.0.1:8080]
 * [--wait [--timeout 15m] [--no-fail-on-no-match] [--allow-dry-run]]`: mints a
 * dev token from a web running in dev mode and sends one event, as a workflow
 * would. Prints the status and body; exits 1 unless the answer is 202. With
 * --wait it then follows the event's status as the project's GitHub Action
 * does (SPEC §12): reads in 25 s slices with a fresh token each, retries
 * 409/429/503 after their Retry-After, prints the Action's table, and exits 0
 * on succeeded (on no_match and skipped with --no-fail-on-no-match, on dry_run
 * with --allow-dry-run), 1 on any other end or a timeout, 2 on a usage error.
 * Web's answers are untrusted input: checked as the Action checks them, and
 * printed without control characters (no terminal escape sequence passes).
 */

import { parseArgs } from "node:util";
import { type EventStatus, OVERALL_STATES } from "../shared/event_status.ts";
import { formatDuration, parseDuration } from "../lib/setting_values.ts";
import { DEFAULT_WEB_URL, TASK_COMMAND } from "./dev_defaults.ts";
import {
  countOf,
  dryRunTotal,
  inertText,
  renderStatusText,
  shown,
  skippedSummary,
} from "./status_table.ts";

/**
 * One line for a request that got no answer: the URL, why (the innermost
 * cause, e.g. "Connection refused"), and what to check. fetch() itself only
 * says "fetch failed".
 */
export function unreachable(url: string, err: unknown): Error {
  let cause = err;
  while (cause instanceof Error && cause.cause !== undefined) cause = cause.cause;
  const detail = (cause instanceof Error ? cause.message : String(cause)).split("\n")[0];
  const why = detail.slice(detail.lastIndexOf(": ") + 1).replace(/\s*\(os error \d+\)$/, "")
    .trim();
  return new Error(
    `Cannot reach ${url} (${why}): check that \`${TASK_COMMAND} dev\` is running and that --url is the "web" address its banner prints`,
    { cause: err },
  );
}

async function send(url: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(url, { method: "POST", ...init });
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) {
      // Security: the task may only reach loopback, where dev-mode web listens.
      throw new Error(
        `Cannot reach ${url}: dev-mode web listens on loopback only, so --url must name 127.0.0.1, localhost or [::1]`,
        { cause: err },
      );
    }
    throw unreachable(url, err);
  }
}

/** Mints one GitHub-shaped token from dev-mode web's /dev/token. */
export async function mintDevToken(url: string): Promise<string> {
  const minted = await send(`${url}/dev/token`);
  if (minted.status !== 200) {
    await minted.body?.cancel();
    throw new Error(
      `could not mint a dev token (${minted.status}): is web running with --dev-mode at ${url}?`,
    );
  }
  const { token } = await minted.json();
  return token;
}

/** Sends one event through a dev-mode web; returns the HTTP status and body. */
export async function triggerDevEvent(
  url: string,
  image: string,
  tags?: string[],
  token?: string,
): Promise<{ status: number; body: string; retryAfter?: string }> {
  token ??= await mintDevToken(url);
  const res = await send(`${url}/event`, {
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(tags ? { image, tags } : { image }),
  });
  return {
    status: res.status,
    body: await res.text(),
    retryAfter: res.headers.get("retry-after") ?? undefined,
  };
}

/** How long to wait before asking again: Retry-After in seconds (1..60), else the fallback. */
export function retryDelayMs(retryAfter: string | null | undefined, fallbackMs: number): number {
  if (retryAfter && /^\d{1,4}$/.test(retryAfter.trim())) {
    return Math.min(60, Math.max(1, Number(retryAfter.trim()))) * 1000;
  }
  return fallbackMs;
}

/**
 * How long --wait follows an event by default: the Action's default, longer
 * than the workers' default ROLLOUT_TIMEOUT (10m) so a slow rollout ends in
 * their verdict, not in ours.
 */
export const DEFAULT_TIMEOUT = "15m";

/** Web holds a status read at most 60 s; proxies cut idle upstreams at 60 s: ask in slices. */
export const SLICE_SECONDS = 25;

/** What follows an event needs. */
export interface FollowOptions {
  /** Web's base URL (the event's status is `<url>/event/<id>`). */
  url: string;
  id: string;
  /** When to give up (ms since the epoch, as `now` counts). */
  deadline: number;
  /** A fresh token per read: a wait may outlive one token. */
  token: () => Promise<string>;
  /** Called with one line whenever the state seen changes. */
  onProgress?: (line: string) => void;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Per-request allowance beyond the wait itself. */
  requestTimeoutMs?: number;
}

/** The last status seen and whether the deadline came first. */
export interface FollowResult {
  status?: EventStatus;
  timedOut: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * What the exit code and the totals are decided from (state, final, counts)
 * must be of web's exact shape, as the Action's jq checks it; what is only
 * shown is read leniently by status_table.ts.
 */
export function readStatus(text: string): EventStatus {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error("web answered 200 with a body that is not JSON");
  }
  const s = value as Record<string, unknown>;
  const valid = isObject(s) && (OVERALL_STATES as readonly string[]).includes(s.state as string) &&
    typeof s.final === "boolean" && Array.isArray(s.tags) && Array.isArray(s.clusters) &&
    s.clusters.every((c) =>
      isObject(c) &&
      (c.counts == null ||
        (isObject(c.counts) && Object.values(c.counts).every((n) => countOf(n) !== undefined))) &&
      (c.omitted == null || countOf(c.omitted) !== undefined) &&
      (c.deployments == null ||
        (Array.isArray(c.deployments) &&
          c.deployments.every((d) => isObject(d) && (d.rollout == null || isObject(d.rollout)))))
    );
  if (!valid) throw new Error("web answered 200 with a body that is not an event status");
  return value as EventStatus;
}

/** The line printed whenever the state seen changes: the overall and each cluster's state. */
export function progressLine(status: EventStatus): string {
  const clusters = status.clusters.map((c) => `${shown(c.cluster)}: ${shown(c.state)}`).join(", ");
  return `Event ${shown(status.id)}: ${inertText(`${status.state} (${clusters})`)}`;
}

/** Reads `GET /event/<id>?wait=` until the state is final or the deadline passes. */
export async function followStatus(options: FollowOptions): Promise<FollowResult> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const extraMs = options.requestTimeoutMs ?? 10_000;
  const base = `${options.url}/event/${encodeURIComponent(options.id)}`;
  let status: EventStatus | undefined;
  let seen = "";
  while (true) {
    const left = options.deadline - now();
    if (left <= 0) return { status, timedOut: true };
    const slice = Math.max(1, Math.min(SLICE_SECONDS, Math.floor(left / 1000)));
    const started = now();
    const token = await options.token();
    let res: Response;
    try {
      res = await fetch(`${base}?wait=${slice}`, {
        headers: { authorization: `Bearer ${token}`, accept: "application/json" },
        signal: AbortSignal.timeout(slice * 1000 + extraMs),
      });
    } catch (err) {
      if (options.deadline - now() <= 2000) throw unreachable(base, err);
      await sleep(2000);
      continue;
    }
    if (res.status === 200) {
      status = readStatus(await res.text());
      const line = progressLine(status);
      if (line !== seen) options.onProgress?.(line);
      seen = line;
      if (status.final) return { status, timedOut: false };
      // An answer sooner than asked for is not final: do not spin.
      if (now() - started < 1000) await sleep(1000);
      continue;
    }
    const body = await res.text();
    if (res.status === 429 || res.status === 503 || res.status >= 500) {
      const delay = retryDelayMs(res.headers.get("retry-after"), res.status >= 500 ? 2000 : 5000);
      if (options.deadline - now() <= delay) return { status, timedOut: true };
      options.onProgress?.(`GET ${base} answered ${res.status}; asking again in ${delay / 1000}s`);
      await sleep(delay);
      continue;
    }
    if (res.status === 404) {
      throw new Error(`GET ${base} answered 404: the event is unknown or its status expired`);
    }
    throw new Error(`GET ${base} answered ${res.status}: ${inertText(body.slice(0, 200))}`);
  }
}

/** What the caller accepts besides succeeded (the Action's inputs of the same names). */
export interface ExitOptions {
  /** no_match and skipped fail (default true). */
  failOnNoMatch?: boolean;
  /** dry_run passes (default false). */
  allowDryRun?: boolean;
}

/**
 * The exit code for how the wait ended, as the Action decides: 0 on
 * succeeded, on no_match and skipped unless failOnNoMatch, on dry_run with
 * allowDryRun; 1 on anything else (failed, a timeout).
 */
export function exitCodeFor(result: FollowResult, options: ExitOptions = {}): 0 | 1 {
  if (result.timedOut || !result.status) return 1;
  switch (result.status.state) {
    case "succeeded":
      return 0;
    case "no_match":
    case "skipped":
      return options.failOnNoMatch ?? true ? 1 : 0;
    case "dry_run":
      return options.allowDryRun ? 0 : 1;
    default:
      return 1;
  }
}

/** Why the wait ended without success, for the last line on stderr (undefined on 0). */
export function verdict(
  id: string,
  result: FollowResult,
  options: ExitOptions = {},
): string | undefined {
  if (exitCodeFor(result, options) === 0) return undefined;
  const status = result.status;
  if (result.timedOut || !status) return undefined;
  switch (status.state) {
    case "no_match":
      return `event ${id} ended no_match (--no-fail-on-no-match accepts this)`;
    case "skipped":
      return `event ${id} ended skipped: every Deployment running the image was skipped: ${
        skippedSummary(status) || "no reason given"
      } (--no-fail-on-no-match accepts this)`;
    case "dry_run":
      return `event ${id} ended dry_run: the workers run with DRY_RUN, so ${
        dryRunTotal(status)
      } Deployments were matched and none was restarted (--allow-dry-run accepts this)`;
    default:
      return `event ${id} ended ${status.state}`;
  }
}

/** Posts with the Action's retries: 409 with the same token, 429/503 with a fresh one. */
async function postWithRetries(
  url: string,
  image: string,
  tags: string[] | undefined,
  deadline: number,
): Promise<{ status: number; body: string }> {
  let token = await mintDevToken(url);
  while (true) {
    const answer = await triggerDevEvent(url, image, tags, token);
    if (![409, 429, 503].includes(answer.status)) return answer;
    const delay = retryDelayMs(answer.retryAfter, answer.status === 409 ? 1000 : 5000);
    if (Date.now() + delay >= deadline) return answer;
    console.error(`POST ${url}/event answered ${answer.status}; retrying in ${delay / 1000}s`);
    await new Promise((r) => setTimeout(r, delay));
    if (answer.status !== 409) token = await mintDevToken(url);
  }
}

const USAGE =
  `usage: deno task trigger <image[:tag]> [--tags a,b] [--url ${DEFAULT_WEB_URL}] [--wait [--timeout ${DEFAULT_TIMEOUT}] [--no-fail-on-no-match] [--allow-dry-run]]`;

function usage(message?: string): never {
  if (message) console.error(`deno task trigger: ${message}`);
  console.error(USAGE);
  Deno.exit(2);
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      options: {
        tags: { type: "string" },
        url: { type: "string", default: DEFAULT_WEB_URL },
        wait: { type: "boolean", default: false },
        timeout: { type: "string", default: DEFAULT_TIMEOUT },
        "fail-on-no-match": { type: "boolean", default: true },
        "allow-dry-run": { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: true,
      allowNegative: true,
    });
  } catch (err) {
    usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) usage();
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(values.timeout!);
  } catch (err) {
    usage(`--timeout "${values.timeout}": ${(err as Error).message}`);
  }
  if (timeoutMs <= 0) usage(`--timeout must be more than 0s`);
  const url = values.url!.replace(/\/+$/, "");
  const tags = values.tags?.split(",").map((t) => t.trim()).filter(Boolean);
  const deadline = Date.now() + timeoutMs;

  const { status, body } = values.wait
    ? await postWithRetries(url, positionals[0], tags, deadline)
    : await triggerDevEvent(url, positionals[0], tags);
  console.log(`${status} ${inertText(body)}`);
  if (status !== 202) return 1;
  if (!values.wait) return 0;

  let id: unknown;
  try {
    id = JSON.parse(body).id;
  } catch {
    // reported below
  }
  if (typeof id !== "string" || !/^[0-9a-f-]{36}$/i.test(id)) {
    throw new Error("web answered 202 without an event id");
  }
  const result = await followStatus({
    url,
    id,
    deadline,
    token: () => mintDevToken(url),
    onProgress: (line) => console.error(line),
  });
  if (result.status) {
    console.log("\n" + renderStatusText(result.status, { timedOut: result.timedOut }).trimEnd());
  }
  const exit = {
    failOnNoMatch: values["fail-on-no-match"]!,
    allowDryRun: values["allow-dry-run"]!,
  };
  const code = exitCodeFor(result, exit);
  if (result.timedOut) {
    console.error(
      `deno task trigger: event ${id} is still ${
        result.status?.state ?? "pending"
      } after --timeout ${formatDuration(timeoutMs)}`,
    );
  } else {
    const why = verdict(id, result, exit);
    if (why) console.error(`deno task trigger: ${why}`);
  }
  return code;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (err) {
    console.error(`deno task trigger: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
