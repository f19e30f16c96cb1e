/**
 * One scope's reflector: the loop that keeps the index current for one
 * watched namespace (or the whole cluster) by list + watch, attempt after
 * attempt (the calls themselves are in list_watch.ts), and recovers from what
 * ends an attempt. A server that refuses the streaming list (422: the
 * WatchList feature gate is off) is listed in pages from then on.
 *
 * Watch discipline follows client-go: each watch asks for a random timeout in
 * [min, 2*min) so watches do not all end together; it resumes from the last
 * resourceVersion (bookmarks keep it fresh); an expired one (410 Gone) or a
 * malformed event triggers a relist. A watch that delivers nothing (not even a
 * bookmark) for the idle deadline is presumed dead: it is aborted and resumed.
 * The scope is reported relisting while a list is due, so readiness is false
 * while the cache is not current.
 *
 * Every failed list is reported to the sync tracker at once, with the API's
 * answer: a scope that has never listed is then unavailable rather than
 * pending, so events need not wait through the retries. A streaming list that
 * goes silent counts as failed after LIST_TIMEOUT_MS, as a paged list request
 * does after the API client's timeout, so a first list cannot hang unreported.
 */

import { backoffDelay, sleep } from "../../lib/backoff.ts";
import { describeError } from "../../lib/error_text.ts";
import { KubeApiError, WatchEventError } from "../kube/errors.ts";
import { type Scope, scopeLabel } from "./sync.ts";
import {
  type Attempt,
  Gone,
  listAndWatch,
  type Reflector,
  type ReflectorOptions,
  refusesStreamingList,
} from "./list_watch.ts";

export { randomWatchTimeout, type ReflectorOptions } from "./list_watch.ts";

/**
 * How often kube-apiserver sends a bookmark on an idle watch: its watch cache
 * uses a one-minute bookmark frequency (apiserver storage/cacher
 * defaultBookmarkFrequency), plus one about 2 s before the watch's timeout.
 */
export const BOOKMARK_INTERVAL_MS = 60_000;
/**
 * No event and no bookmark for this long: the watch is presumed dead. Two and
 * a half bookmark intervals tolerate one lost or late bookmark (the server
 * does not guarantee them) while bounding how stale a ready inventory can be.
 */
export const WATCH_IDLE_TIMEOUT_MS = 150_000;
/** client-go's reflector minimum; each watch asks for a random timeout in [min, 2*min). */
export const MIN_WATCH_TIMEOUT_SECONDS = 300;
/**
 * A streaming list silent this long has failed, as a paged list request does
 * after the API client's timeout (kube/api.ts, 15 s): a first list that hangs
 * makes its scope unavailable within this bound, so events do not wait on it.
 * kube-apiserver answers a streaming list within a few seconds (it waits at
 * most ~3 s for its watch cache to be fresh), then sends the objects at once.
 */
export const LIST_TIMEOUT_MS = 15_000;

/** Runs the reflector of `scope` until `signal` aborts. */
export async function runReflector(
  options: ReflectorOptions,
  scope: Scope,
  signal: AbortSignal,
): Promise<void> {
  const label = scopeLabel(scope);
  const r: Reflector = {
    options,
    scope,
    label,
    log: options.logger.child({ scope: label }),
    signal,
    resourceVersion: undefined,
    failures: 0,
    expiredInARow: 0,
    streamingList: options.streamingList,
    refused: false,
  };
  while (!signal.aborted) {
    const attempt = openAttempt(r);
    try {
      await listAndWatch(r, attempt);
    } catch (err) {
      if (signal.aborted) break;
      await recover(r, attempt, err);
    } finally {
      attempt.close();
    }
  }
}

/** One attempt's abort (linked to the reflector's) and deadline: the list's, then the idle one. */
function openAttempt(r: Reflector): Attempt {
  const { clock, idleTimeoutMs, listTimeoutMs, sync } = r.options;
  const watch = new AbortController();
  const stop = () => watch.abort();
  r.signal.addEventListener("abort", stop, { once: true });
  let cancelTimer = () => {};
  const attempt: Attempt = {
    signal: watch.signal,
    idle: false,
    listing: undefined,
    arm: () => {
      cancelTimer();
      const deadline = attempt.listing ? Math.min(listTimeoutMs, idleTimeoutMs) : idleTimeoutMs;
      cancelTimer = clock.schedule(() => {
        attempt.idle = true;
        watch.abort();
      }, deadline);
    },
    contact: () => {
      sync.heard(r.scope);
      attempt.arm();
    },
    close: () => {
      cancelTimer();
      r.signal.removeEventListener("abort", stop);
    },
  };
  return attempt;
}

/** Decides what a failed attempt leads to, and waits as long as that needs. */
async function recover(r: Reflector, attempt: Attempt, err: unknown): Promise<void> {
  if (attempt.listing && refusesStreamingList(err)) return listInPages(r, err);
  // A list was due and did not complete: the streaming list's stream had not reached
  // its end bookmark, or a paged list failed (its resourceVersion is set only at the end).
  if (r.resourceVersion === undefined) {
    if (attempt.idle) err = new Error(`the streaming list sent nothing for ${listSeconds(r)} s`);
    reportListFailure(r, err);
  } else if (attempt.idle) return resumeIdle(r);
  if (err instanceof Gone || (err instanceof KubeApiError && err.status === 410)) {
    return await relistAfterGone(r);
  }
  // The watch of a listed scope: its index is kept; readiness says why it is not current.
  if (r.resourceVersion !== undefined) r.options.sync.watchFailed(r.scope, failureAnswer(err));
  await retryAfterFailure(r, err);
}

/** The server refused the streaming list: list in pages from now on. */
function listInPages(r: Reflector, err: unknown): void {
  // As client-go does on any watch-list error; remembered, so it is asked only once.
  r.streamingList = false;
  r.refused = true;
  r.log.info("the API server does not offer the streaming list; listing in pages", {
    error: describeError(err),
    hint: "Kubernetes 1.32+ offers it (the WatchList feature gate); paged lists work," +
      " with more memory and time at start-up",
  });
}

/** The watch was silent past the idle deadline: resume it from the last resourceVersion. */
function resumeIdle(r: Reflector): void {
  r.options.onWatchIdle?.(r.label);
  r.log.warn("watch idle: no event or bookmark in time; resuming from the last resourceVersion", {
    idle_timeout_ms: r.options.idleTimeoutMs,
    hint: "the connection may be dead (proxy, load balancer, NAT); if this repeats on a" +
      " quiet namespace, the API server may not send watch bookmarks",
  });
}

/**
 * Tells the sync tracker at once, at the first failure rather than after the
 * retries: a scope that has never listed becomes unavailable, so events are
 * matched against the other scopes instead of waiting for this one.
 */
function reportListFailure(r: Reflector, err: unknown): void {
  const answer = failureAnswer(err);
  if (!r.options.sync.listFailed(r.scope, answer)) return;
  r.log.warn("inventory scope cannot be listed; events are matched without it until it can", {
    error: answer,
  });
}

/** A failed list or watch: counted, logged, and retried after a backoff. */
async function retryAfterFailure(r: Reflector, err: unknown): Promise<void> {
  const { log, options } = r;
  const delay = backoffDelay(r.failures++, 250, 10_000);
  if (err instanceof WatchEventError) {
    r.resourceVersion = undefined;
    options.sync.relisting(r.scope);
    options.onMalformedEvent?.(r.label);
    log.warn("malformed answer from the API server; relisting", {
      error: describeError(err),
      retry_in_ms: delay,
    });
  } else {
    options.onWatchError?.(r.label);
    const hint = err instanceof KubeApiError && err.status === 403
      ? "the worker's RBAC does not allow list/watch on deployments here; see docs/deployment.md"
      : undefined;
    log.warn("inventory list/watch failed; retrying", {
      error: describeError(err),
      retry_in_ms: delay,
      hint,
    });
  }
  await sleep(delay, r.signal);
}

const listSeconds = (r: Reflector) =>
  Math.min(r.options.listTimeoutMs, r.options.idleTimeoutMs) / 1000;

/**
 * The request line kube/api.ts puts before the answer ("GET /apis/…?limit=500: "
 * or "… failed: "). Security: its query may hold a list's continue token, which
 * is not for reports; the answer that follows names the status and the reason.
 */
const REQUEST_LINE = /^[A-Z]+ \/\S*?(?: failed)?: /;

/** A failed list or watch as the API answered it: "403 Forbidden: deployments.apps is forbidden: …". */
export function failureAnswer(err: unknown): string {
  if (!(err instanceof KubeApiError)) return describeError(err);
  const answer = describeError(err).replace(REQUEST_LINE, "");
  // No HTTP answer (refused, DNS, TLS, timeout): the reason says which kind of failure.
  return err.status === 0 ? `${err.reason}: ${answer}` : answer;
}

/** The resourceVersion expired: list again, backing off when it keeps expiring. */
async function relistAfterGone(r: Reflector): Promise<void> {
  r.resourceVersion = undefined;
  r.options.sync.relisting(r.scope);
  // One expiry is routine; expiring again right after a relist is not: back off.
  const delay = r.expiredInARow > 0 ? backoffDelay(r.expiredInARow - 1, 250, 10_000) : 0;
  r.expiredInARow++;
  r.log.info("watch expired (410 Gone); relisting", {
    retry_in_ms: delay > 0 ? delay : undefined,
  });
  if (delay > 0) await sleep(delay, r.signal);
}
