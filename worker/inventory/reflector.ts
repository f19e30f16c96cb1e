/**
 * One scope's reflector: keeps the index current for one watched namespace
 * (or the whole cluster) by list + watch, in the shape of client-go's
 * `tools/cache/reflector.go`: `list` (paged), `watchList` (a streaming list:
 * a watch with sendInitialEvents, Kubernetes 1.32+ by default, whose every
 * Deployment arrives as one line, is summarized and dropped, so no page of
 * hundreds of objects is ever held; the same stream goes on as the watch) and
 * `watch`, each its own function, and one loop that recovers from failures.
 * A server that refuses the streaming list (422: the WatchList feature gate is
 * off) is listed in pages from then on.
 *
 * Watch discipline follows client-go: each watch asks for a random timeout in
 * [min, 2*min) so watches do not all end together; it resumes from the last
 * resourceVersion (bookmarks keep it fresh); an expired one (410 Gone) or a
 * malformed event triggers a relist. A watch that delivers nothing (not even a
 * bookmark) for the idle deadline is presumed dead: it is aborted and resumed.
 * The scope is reported relisting while a list is due, so readiness is false
 * while the cache is not current. API objects are untrusted; events are
 * checked for shape by kube/api.ts and for scope here, and only summaries are
 * kept.
 */

import type { Clock } from "../../lib/clock.ts";
import { backoffDelay, sleep } from "../../lib/backoff.ts";
import type { Logger } from "../../lib/log.ts";
import { describeError } from "../../lib/error_text.ts";
import type { KubeApi } from "../kube/api.ts";
import { KubeApiError, WatchEventError } from "../kube/errors.ts";
import type { Deployment } from "../kube/objects.ts";
import type { WatchEvent } from "../kube/watch_stream.ts";
import type { DeploymentIndex } from "./index.ts";
import { type Scope, scopeLabel, type SyncTracker } from "./sync.ts";

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

/** A server-side watch timeout uniformly in [min, 2*min) seconds, as client-go's reflector picks. */
export function randomWatchTimeout(minSeconds: number, random: () => number): number {
  const r = random();
  return Math.floor(minSeconds * (1 + (r >= 0 && r < 1 ? r : 0)));
}

/** What every reflector of an inventory shares. */
export interface ReflectorOptions {
  api: KubeApi;
  index: DeploymentIndex;
  sync: SyncTracker;
  logger: Logger;
  clock: Clock;
  random: () => number;
  pageSize: number;
  idleTimeoutMs: number;
  minWatchTimeoutSeconds: number;
  /** Ask for the streaming list first. */
  streamingList: boolean;
  onRelist?: (scope: string) => void;
  onWatchError?: (scope: string) => void;
  onWatchIdle?: (scope: string) => void;
  onMalformedEvent?: (scope: string) => void;
  onObject?: (type: "ADDED" | "MODIFIED" | "DELETED", d: Deployment) => void;
}

/** The API server ended the watch because its resourceVersion is too old. */
class Gone extends Error {}

/** The API server does not offer the streaming list (400/422 on sendInitialEvents). */
const refusesStreamingList = (err: unknown) =>
  err instanceof KubeApiError && (err.status === 400 || err.status === 422);

/** One scope's reflector and what it remembers between attempts. */
interface Reflector {
  options: ReflectorOptions;
  scope: Scope;
  label: string;
  log: Logger;
  signal: AbortSignal;
  /** Where the next watch resumes; undefined when a list is due. */
  resourceVersion: string | undefined;
  failures: number;
  expiredInARow: number;
  streamingList: boolean;
  /** The streaming list was just refused: the paged list that follows is the same relist. */
  refused: boolean;
}

/** One (re)list of the scope, fed object by object by either kind of list. */
interface Listing {
  item(d: Deployment, where: string): void;
  /** What was indexed in the scope and not seen again is gone. */
  finish(): void;
}

/** One list-and-watch attempt: its own abort, the idle deadline, a streaming list in progress. */
interface Attempt {
  signal: AbortSignal;
  /** Set when the idle deadline aborted the watch. */
  idle: boolean;
  /** Set while this stream is a streaming list that has not reached its end bookmark. */
  listing: Listing | undefined;
  /** (Re)starts the idle deadline. */
  arm(): void;
  /** The server was heard from: resets the deadline and the scope's last contact. */
  contact(): void;
  close(): void;
}

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

function openAttempt(r: Reflector): Attempt {
  const { clock, idleTimeoutMs, sync } = r.options;
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
      cancelTimer = clock.schedule(() => {
        attempt.idle = true;
        watch.abort();
      }, idleTimeoutMs);
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

/** Lists when a list is due (paged, or as a streaming list), then watches. */
async function listAndWatch(r: Reflector, attempt: Attempt): Promise<void> {
  if (r.resourceVersion === undefined) {
    if (!r.refused) r.options.onRelist?.(r.label);
    r.refused = false;
    if (r.streamingList) attempt.listing = startListing(r);
    else {
      r.resourceVersion = await list(r);
      markListed(r);
    }
  }
  await watch(r, attempt);
}

/**
 * A (re)list of the scope: each object checked and indexed; finish() drops
 * what was indexed in the scope and not seen again.
 */
function startListing(r: Reflector): Listing {
  const { index, onObject } = r.options;
  const replacement = index.replace(r.scope);
  return {
    item(d, where) {
      const name = d?.metadata?.name;
      const namespace = d?.metadata?.namespace;
      if (typeof name !== "string" || !name || typeof namespace !== "string" || !namespace) {
        throw new WatchEventError(`${where} has no metadata.name or metadata.namespace`);
      }
      // Security: a namespaced list must only ever report its own namespace.
      if (!inScope(namespace, r.scope)) {
        throw new WatchEventError(`${where} is outside ${r.label}`);
      }
      onObject?.("ADDED", d);
      replacement.add(d);
    },
    finish() {
      replacement.finish((gone) =>
        onObject?.("DELETED", { metadata: { namespace: gone.namespace, name: gone.name } })
      );
    },
  };
}

const inScope = (namespace: string, scope: Scope) => scope === undefined || namespace === scope;

/** A paged list of the scope; returns its resourceVersion. */
async function list(r: Reflector): Promise<string> {
  const listing = startListing(r);
  let continueToken: string | undefined;
  let resourceVersion = "";
  do {
    const page = await r.options.api.listDeployments(r.scope, {
      limit: r.options.pageSize,
      continueToken,
    });
    for (const [i, d] of page.items.entries()) listing.item(d, `list item ${i}`);
    continueToken = page.continueToken;
    resourceVersion = page.resourceVersion;
  } while (continueToken);
  // An empty resourceVersion would make the watch start "now" and miss what changed meanwhile.
  if (!resourceVersion) throw new Error("the list answer carries no resourceVersion");
  listing.finish();
  return resourceVersion;
}

/** The scope's list is complete: the index is current again. */
function markListed(r: Reflector): void {
  const { index, sync } = r.options;
  r.log.info(sync.hasListed(r.scope) ? "inventory relisted" : "inventory synced", {
    deployments: index.count(r.scope),
    total_deployments: index.count(),
    streamed: r.streamingList,
  });
  sync.listed(r.scope);
}

/** One watch (a streaming list's stream included) until the server ends it. */
async function watch(r: Reflector, attempt: Attempt): Promise<void> {
  const { api, clock } = r.options;
  const started = clock.now();
  let events = 0;
  attempt.arm();
  for await (
    const event of api.watchDeployments(r.scope, {
      resourceVersion: r.resourceVersion ?? "",
      sendInitialEvents: attempt.listing !== undefined,
      signal: attempt.signal,
      timeoutSeconds: randomWatchTimeout(r.options.minWatchTimeoutSeconds, r.options.random),
      onOpen: attempt.contact,
    })
  ) {
    attempt.contact();
    if (attempt.listing) watchList(r, attempt, event);
    else r.resourceVersion = apply(r, event);
    events++;
    r.failures = 0;
    r.expiredInARow = 0;
  }
  // A streaming list cut before its end bookmark is incomplete: list again.
  if (attempt.listing) throw new Error("the streaming list ended before its initial events did");
  // client-go treats this as an error too: a server that closes every watch at once
  // would otherwise be asked again in a tight loop.
  if (events === 0 && clock.now() - started < 1000) {
    throw new Error("the watch closed within a second without an event");
  }
  r.failures = 0;
}

/** One event of a streaming list before its end bookmark (KEP-3157). */
function watchList(r: Reflector, attempt: Attempt, event: WatchEvent): void {
  const listing = attempt.listing!;
  if (event.type === "ADDED") listing.item(event.object, "initial ADDED event");
  else if (event.type === "BOOKMARK" && event.object.initialEventsEnd) {
    listing.finish();
    attempt.listing = undefined;
    r.resourceVersion = event.object.metadata.resourceVersion;
    markListed(r);
  } else {
    // Until the end bookmark, a resourceVersion is no place to resume from.
    apply(r, event);
  }
}

/** Applies one watch event; returns the resourceVersion to resume from. */
function apply(r: Reflector, event: WatchEvent): string {
  if (event.type === "ERROR") {
    if (event.object.code === 410) throw new Gone();
    throw new KubeApiError(
      event.object.code,
      event.object.reason ?? "WatchError",
      `watch error ${event.object.code}: ${(event.object.message ?? "").slice(0, 300)}`,
    );
  }
  if (event.type !== "BOOKMARK") {
    const { namespace, name } = event.object.metadata;
    // Security: a namespaced watch must only ever report its own namespace.
    if (!inScope(namespace, r.scope)) {
      throw new WatchEventError(`${event.type} watch event is outside ${r.label}`);
    }
    r.options.onObject?.(event.type, event.object);
    if (event.type === "DELETED") r.options.index.remove(namespace, name);
    else r.options.index.upsert(event.object);
  }
  return event.object.metadata.resourceVersion;
}

/** Decides what a failed attempt leads to, and waits as long as that needs. */
async function recover(r: Reflector, attempt: Attempt, err: unknown): Promise<void> {
  const { log, options } = r;
  if (attempt.listing && refusesStreamingList(err)) {
    // As client-go does on any watch-list error; remembered, so it is asked only once.
    r.streamingList = false;
    r.refused = true;
    log.info("the API server does not offer the streaming list; listing in pages", {
      error: describeError(err),
      hint: "Kubernetes 1.32+ offers it (the WatchList feature gate); paged lists work," +
        " with more memory and time at start-up",
    });
    return;
  }
  if (attempt.idle) {
    options.onWatchIdle?.(r.label);
    log.warn("watch idle: no event or bookmark in time; resuming from the last resourceVersion", {
      idle_timeout_ms: options.idleTimeoutMs,
      hint: "the connection may be dead (proxy, load balancer, NAT); if this repeats on a" +
        " quiet namespace, the API server may not send watch bookmarks",
    });
    return;
  }
  if (err instanceof Gone || (err instanceof KubeApiError && err.status === 410)) {
    return await relistAfterGone(r);
  }
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
