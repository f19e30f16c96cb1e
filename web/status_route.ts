/**
 * GET /event/<id>[?wait=<seconds>] (SPEC §12) as named steps: authenticate
 * (the same steps as POST) → parse the id and query → read the record → check
 * the repository binding → answer, or wait for a change and read again. Only
 * the repository that posted the event may read it: unknown, expired and
 * foreign ids get one identical 404. Reading is not a replay. A waiting read
 * holds a slot (web/status_waiters.ts: bounded in all and per repository, 429
 * past either) until the record changes, its deadline, shutdown (answered at
 * once with what is known) or its client going away (the slot is freed then).
 */

import { Reason } from "./reasons.ts";
import type { EventStatus } from "../shared/event_status.ts";
import { nextTimedChange, summarizeStatus } from "./status_summary.ts";
import type { LogFields } from "../lib/log.ts";
import { json } from "../lib/json_response.ts";
import type { StatusReadAnswer, WebMetrics } from "./metrics.ts";
import { type Authenticate, repositoryBinding } from "./request_steps.ts";
import type { Route } from "./route.ts";
import type { StatusReader } from "./status_store.ts";
import type { StatusWaiters, Waiter, WaitRefusal } from "./status_waiters.ts";

/** Longest `?wait=` accepted, in seconds (ingress proxies often cut idle upstreams at 60 s). */
export const MAX_WAIT_SECONDS = 60;
/** The path of a status record, `/event/<id>` or `/v1/event/<id>`. */
export const STATUS_PATH = /^\/(?:v1\/)?event\/([^/]*)$/;
const EVENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const MAX_QUERY_LENGTH = 64;
/** How long a 429 asks the client to wait before it reads again. */
const RETRY_AFTER_SECONDS = "5";
/** The 429 body for each refusal. */
const BUSY: Record<WaitRefusal, string> = {
  full: "too many requests are waiting; retry shortly",
  repository_share: "too many requests of this repository are waiting; retry shortly",
};

/** What the status route uses. */
export interface StatusRouteDeps {
  authenticate: Authenticate;
  reader: StatusReader;
  waiters: StatusWaiters;
  metrics: WebMetrics;
  /** How long after publishing a live cluster may take to report. */
  reportTimeoutMs: number;
  now: () => number;
  /** Aborted at shutdown: waiting requests are answered at once with what is known (200). */
  signal?: AbortSignal;
}

/** A parsed status request, or the reason it is refused. */
export type StatusRequest = { id: string; waitMs: number } | { error: string };

/** Reads the id and the query; pure, so every refusal is a table row in tests. */
export function parseStatusRequest(url: URL): StatusRequest {
  const raw = STATUS_PATH.exec(url.pathname)?.[1] ?? "";
  if (!EVENT_ID.test(raw)) return { error: "event id must be the id POST /event answered" };
  if (url.search.length > MAX_QUERY_LENGTH) return { error: "query string is too long" };
  let waitMs = 0;
  let seen = false;
  for (const [key, value] of url.searchParams) {
    if (key !== "wait") return { error: "the only query parameter is wait" };
    if (seen) return { error: "wait is given more than once" };
    seen = true;
    if (!/^[0-9]{1,2}$/.test(value) || Number(value) > MAX_WAIT_SECONDS) {
      return { error: `wait must be whole seconds from 0 to ${MAX_WAIT_SECONDS}` };
    }
    waitMs = Number(value) * 1000;
  }
  return { id: raw, waitMs };
}

/** Waits for the waiter, or until `timedMs` when the answer would change by itself then. */
async function untilChangeOr(
  waiter: Waiter,
  timedMs: number | undefined,
  now: () => number,
): Promise<void> {
  if (timedMs === undefined) {
    await waiter.ended;
    return;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timed = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, timedMs - now()));
  });
  await Promise.race([waiter.ended, timed]);
  clearTimeout(timer);
  waiter.cancel();
}

/** Creates the GET /event/<id> route. */
export function createStatusRoute(deps: StatusRouteDeps): Route {
  const notFound = () => json(404, { error: "not found" });
  const count = (answer: StatusReadAnswer) => deps.metrics.statusReads.inc({ answer });

  /** One read: the status, or undefined when this repository may not see a record of that id. */
  const readOwned = async (id: string, repository: string): Promise<EventStatus | undefined> => {
    const stored = await deps.reader.read(id);
    // Security: a foreign binding answers exactly like a missing record.
    if (!stored || stored.binding.repository !== repository) return undefined;
    return summarizeStatus({
      id,
      binding: stored.binding,
      reports: stored.reports,
      unreadable: stored.unreadable,
      unreachable: stored.unreachable,
      now: deps.now(),
      reportTimeoutMs: deps.reportTimeoutMs,
    });
  };

  return async (req, _info, log: LogFields) => {
    const claims = await deps.authenticate(req, log);
    const repository = repositoryBinding(claims);
    const parsed = parseStatusRequest(new URL(req.url));
    if ("error" in parsed) {
      count("bad_request");
      return json(400, { error: parsed.error });
    }
    log.event_id = parsed.id;
    const until = deps.now() + parsed.waitMs;
    // Deno aborts it when the client goes away; only a waiting read looks (Deno.serve warns on use).
    const client = parsed.waitMs > 0 ? req.signal : undefined;
    let status: EventStatus | undefined;
    for (;;) {
      if (client?.aborted) {
        // Nobody reads the answer, so nothing is read for it; its slot was freed as it left.
        log.reason = Reason.client_gone;
        return json(499, { error: "the client closed the request" });
      }
      // The waiter is registered before the read: a change announced in between still wakes it.
      const watched = parsed.waitMs > 0 && deps.now() < until && !deps.signal?.aborted
        ? deps.waiters.watch({
          id: parsed.id,
          repository,
          untilMs: until,
          signals: [deps.signal, client],
        })
        : undefined;
      const waiter = watched && "refused" in watched ? undefined : watched;
      try {
        status = await readOwned(parsed.id, repository);
      } catch (err) {
        // A failed read (Valkey away: 503) must not keep its slot until the wait's deadline.
        waiter?.cancel();
        throw err;
      }
      const done = !status || status.final || parsed.waitMs === 0 || deps.now() >= until;
      // At shutdown a waiting read is answered with what is known, like one at its deadline.
      if (done || deps.signal?.aborted) {
        waiter?.cancel();
        break;
      }
      if (!waiter) {
        count("busy");
        const refused = watched && "refused" in watched ? watched.refused : "full";
        log.reason = refused === "full" ? Reason.too_many_waiters : Reason.repository_waiters;
        return json(429, { error: BUSY[refused] }, { "retry-after": RETRY_AFTER_SECONDS });
      }
      deps.metrics.statusWaiters.set(deps.waiters.size());
      await untilChangeOr(waiter, nextTimedChange(status!, deps.reportTimeoutMs), deps.now);
      deps.metrics.statusWaiters.set(deps.waiters.size());
    }
    if (!status) {
      count("not_found");
      return notFound();
    }
    count(status.state);
    log.state = status.state;
    return json(200, status);
  };
}
