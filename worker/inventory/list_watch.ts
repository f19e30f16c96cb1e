/**
 * One scope's list and watch calls and what their answers do to the index, in
 * the shape of client-go's `tools/cache/reflector.go`: `list` (paged),
 * `watchList` (a streaming list: a watch with sendInitialEvents, Kubernetes
 * 1.32+ by default, whose every Deployment arrives as one line, is summarized
 * and dropped, so no page of hundreds of objects is ever held; the same stream
 * goes on as the watch) and `watch`, each its own function; listAndWatch() is
 * one attempt of them. Failures are thrown to the loop in reflector.ts, which
 * decides what follows. API objects are untrusted; events are checked for
 * shape by kube/api.ts and for scope here, and only summaries are kept.
 */

import type { Clock } from "../../lib/clock.ts";
import type { Logger } from "../../lib/log.ts";
import type { KubeApi } from "../kube/api.ts";
import { KubeApiError, WatchEventError } from "../kube/errors.ts";
import type { Deployment } from "../kube/objects.ts";
import type { WatchEvent } from "../kube/watch_stream.ts";
import type { DeploymentIndex } from "./index.ts";
import type { Scope, SyncTracker } from "./sync.ts";

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
  /**
   * The deadline of a streaming list until its end bookmark: silent this long, it has
   * failed (the idle deadline applies when shorter). A paged list's requests are bounded
   * by the API client's own timeout.
   */
  listTimeoutMs: number;
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
export class Gone extends Error {}

/** The API server does not offer the streaming list (400/422 on sendInitialEvents). */
export const refusesStreamingList = (err: unknown) =>
  err instanceof KubeApiError && (err.status === 400 || err.status === 422);

/** One scope's reflector and what it remembers between attempts. */
export interface Reflector {
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
export interface Listing {
  item(d: Deployment, where: string): void;
  /** What was indexed in the scope and not seen again is gone. */
  finish(): void;
}

/** One list-and-watch attempt: its own abort, the idle deadline, a streaming list in progress. */
export interface Attempt {
  signal: AbortSignal;
  /** Set when the deadline (the list's or the idle one) aborted the stream. */
  idle: boolean;
  /** Set while this stream is a streaming list that has not reached its end bookmark. */
  listing: Listing | undefined;
  /** (Re)starts the deadline: the list's while `listing` is set, else the idle one. */
  arm(): void;
  /** The server was heard from: resets the deadline and the scope's last contact. */
  contact(): void;
  close(): void;
}

/** Lists when a list is due (paged, or as a streaming list), then watches. */
export async function listAndWatch(r: Reflector, attempt: Attempt): Promise<void> {
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
    // From here the stream is a watch: the idle deadline replaces the list's.
    attempt.arm();
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
