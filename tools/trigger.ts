/**
 * `deno task trigger <image[:tag]> [--tags a,b] [--url http://127.0.0.1:8080]
 * [--wait [--timeout 10m] [--no-fail-on-no-match]]`: mints a dev token from a
 * web running in dev mode and sends one event, as a workflow would. Prints the
 * status and body; exits 1 unless the answer is 202. With --wait it then
 * follows the event's status as the project's GitHub Action does (SPEC §12):
 * reads in 25 s slices with a fresh token each, retries 409/429/503 after
 * their Retry-After, prints the Action's table, and exits 0 on succeeded
 * (and on no_match with --no-fail-on-no-match), 1 on failed, no_match or a
 * timeout, 2 on a usage error. Web's answers are read as untrusted input.
 */

import { parseArgs } from "node:util";
import type { EventStatus } from "../shared/event_status.ts";
import { formatDuration, parseDuration } from "../lib/setting_values.ts";
import { DEFAULT_WEB_URL, TASK_COMMAND } from "./dev_defaults.ts";
import { renderStatusText } from "./status_table.ts";

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

const STATES = ["pending", "in_progress", "succeeded", "failed", "no_match"];

function readStatus(text: string): EventStatus {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error("web answered 200 with a body that is not JSON");
  }
  const s = value as EventStatus;
  if (
    !s || typeof s !== "object" || !STATES.includes(s.state) || typeof s.final !== "boolean" ||
    !Array.isArray(s.clusters) || !Array.isArray(s.tags)
  ) {
    throw new Error("web answered 200 with a body that is not an event status");
  }
  return s;
}

function progressLine(status: EventStatus): string {
  const clusters = status.clusters.map((c) => `${c.cluster}: ${c.state}`).join(", ");
  // deno-lint-ignore no-control-regex
  return `Event ${status.id}: ${status.state} (${clusters})`.replace(/[\x00-\x1f\x7f]/g, " ");
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
    throw new Error(`GET ${base} answered ${res.status}: ${body.slice(0, 200)}`);
  }
}

/** The exit code for how the wait ended (0 succeeded; 1 failed, no_match or timeout). */
export function exitCodeFor(result: FollowResult, failOnNoMatch: boolean): 0 | 1 {
  if (result.timedOut || !result.status) return 1;
  if (result.status.state === "succeeded") return 0;
  if (result.status.state === "no_match") return failOnNoMatch ? 1 : 0;
  return 1;
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
  `usage: deno task trigger <image[:tag]> [--tags a,b] [--url ${DEFAULT_WEB_URL}] [--wait [--timeout 10m] [--no-fail-on-no-match]]`;

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
        timeout: { type: "string", default: "10m" },
        "fail-on-no-match": { type: "boolean", default: true },
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
  console.log(`${status} ${body}`);
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
  const code = exitCodeFor(result, values["fail-on-no-match"]!);
  if (result.timedOut) {
    console.error(
      `deno task trigger: event ${id} is still ${
        result.status?.state ?? "pending"
      } after --timeout ${formatDuration(timeoutMs)}`,
    );
  } else if (code !== 0) {
    const hint = result.status!.state === "no_match" ? " (--no-fail-on-no-match accepts this)" : "";
    console.error(`deno task trigger: event ${id} ended ${result.status!.state}${hint}`);
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
