/**
 * The Deployments in scope, kept current by list + watch and indexed by image
 * repository, so an event is matched in memory: no list call per event. One
 * list+watch loop per watched namespace, or one cluster-wide.
 *
 * The list is a streaming list where the API server offers it (a watch with
 * sendInitialEvents, Kubernetes 1.32+ by default, as client-go's reflector
 * uses it): every Deployment arrives as one line, is summarized and dropped,
 * so no page of hundreds of objects is ever held, and the same stream goes on
 * as the watch. A server that refuses it (422: the WatchList feature gate is
 * off) is listed in pages from then on. The index is lean: per Deployment only
 * what matching, planning and restarting read, its short strings (namespace,
 * repository, tag, container name, pull policy) shared, and a repository used
 * by one Deployment points at it directly instead of through a Set.
 *
 * Watch discipline follows client-go's reflector: each watch asks for a random
 * timeout in [min, 2*min) so watches do not all end together; it resumes from
 * the last resourceVersion (bookmarks keep it fresh); an expired one (410
 * Gone) or a malformed event triggers a relist. A watch that delivers nothing
 * (not even a bookmark) for the idle deadline is presumed dead: it is aborted
 * and resumed. A scope is *current* only when listed, not relisting, and heard
 * from within that deadline; readiness reports it. API objects are untrusted;
 * events are checked for shape by kube_api.ts and for scope here, and only
 * summaries are kept.
 */

import { type Clock, REAL_CLOCK } from "../../lib/clock.ts";
import { backoffDelay, sleep } from "../../lib/backoff.ts";
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../lib/log.ts";
import {
  type Deployment,
  type KubeApi,
  KubeApiError,
  type WatchEvent,
  WatchEventError,
} from "../kube_api.ts";
import { type DeploymentSummary, repositoriesOf, summarizeSharing } from "../plan.ts";

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

/** Options for createInventory. */
export interface InventoryOptions {
  api: KubeApi;
  /** Namespaces to watch; empty means cluster-wide. */
  namespaces: readonly string[];
  logger: Logger;
  pageSize?: number;
  /** Lower bound of the randomised server-side watch timeout; default MIN_WATCH_TIMEOUT_SECONDS. */
  minWatchTimeoutSeconds?: number;
  /** The idle deadline; default WATCH_IDLE_TIMEOUT_MS. */
  watchIdleTimeoutMs?: number;
  /** Uniform in [0, 1); default Math.random. */
  random?: () => number;
  clock?: Clock;
  /**
   * Ask for the streaming list first (default true); false lists in pages only. A server
   * that refuses it is listed in pages anyway.
   */
  streamingList?: boolean;
  /** Reports each relist, each failed list/watch, each idle watch and each malformed event, for metrics. */
  onRelist?: (scope: string) => void;
  onWatchError?: (scope: string) => void;
  onWatchIdle?: (scope: string) => void;
  onMalformedEvent?: (scope: string) => void;
  /**
   * Receives every Deployment as list, watch or upsert() deliver it, before it
   * is summarized (the rollout tracker reads its status from here: no API call
   * of its own), and DELETED for one that is gone, from the watch or a relist.
   */
  onObject?: (type: "ADDED" | "MODIFIED" | "DELETED", d: Deployment) => void;
}

/** The live index of Deployments in scope. */
export interface Inventory {
  /** Runs the list+watch loops until `signal` aborts. */
  run(signal: AbortSignal): Promise<void>;
  /** True once every scope has completed its first list. */
  synced(): boolean;
  /** Resolves once synced() is true, or when `signal` aborts. */
  whenSynced(signal: AbortSignal): Promise<void>;
  /** True while every scope is current (see scopes()). */
  current(): boolean;
  /** Per scope label: listed, not relisting, and heard from within the idle deadline. */
  scopes(): Record<string, boolean>;
  /** Deployments with a container from `repository` (normalised). */
  candidates(repository: string): DeploymentSummary[];
  /** Replaces one Deployment's summary with a fresher copy (after a get or patch). */
  upsert(d: Deployment): void;
  size(): number;
}

/** A server-side watch timeout uniformly in [min, 2*min) seconds, as client-go's reflector picks. */
export function randomWatchTimeout(minSeconds: number, random: () => number): number {
  const r = random();
  return Math.floor(minSeconds * (1 + (r >= 0 && r < 1 ? r : 0)));
}

/** The API server ended the watch because its resourceVersion is too old. */
class Gone extends Error {}

/** The API server does not offer the streaming list (400/422 on sendInitialEvents). */
const refusesStreamingList = (err: unknown) =>
  err instanceof KubeApiError && (err.status === 400 || err.status === 422);

interface ScopeState {
  listed: boolean;
  /** A list is due or running: the index may miss changes. */
  relisting: boolean;
  /** clock.now() of the last completed list, accepted watch or watch event. */
  lastContact: number;
}

/** A repository's users: one Deployment directly, or a Set once a second one uses it. */
type Users = DeploymentSummary | Set<DeploymentSummary>;

/** Creates an inventory; call run() to fill and follow it. */
export function createInventory(options: InventoryOptions): Inventory {
  // namespace → name → summary: the keys are the summary's own (shared) strings.
  const byNamespace = new Map<string, Map<string, DeploymentSummary>>();
  let total = 0;
  const byRepository = new Map<string, Users>();
  // Short strings repeat across Deployments; each is kept once. Bounded: rebuilt when it
  // outgrows the index (tags churn), which only costs sharing, never correctness.
  let pool = new Map<string, string>();
  const share = (s: string): string => {
    const known = pool.get(s);
    if (known !== undefined) return known;
    if (pool.size > 4 * total + 10_000) pool = new Map();
    pool.set(s, s);
    return s;
  };
  const scopes: (string | undefined)[] = options.namespaces.length > 0
    ? [...options.namespaces]
    : [undefined];
  const labelOf = (scope: string | undefined) => scope ?? "(cluster)";
  const clock = options.clock ?? REAL_CLOCK;
  const random = options.random ?? Math.random;
  const idleTimeoutMs = options.watchIdleTimeoutMs ?? WATCH_IDLE_TIMEOUT_MS;
  const minWatchTimeout = options.minWatchTimeoutSeconds ?? MIN_WATCH_TIMEOUT_SECONDS;
  const states = new Map<string | undefined, ScopeState>(
    scopes.map((s) => [s, { listed: false, relisting: true, lastContact: -Infinity }]),
  );
  const pageSize = options.pageSize ?? 500;
  const syncWaiters = new Set<() => void>();
  const isSynced = () => [...states.values()].every((s) => s.listed);

  const unindex = (old: DeploymentSummary) => {
    for (const repo of repositoriesOf(old)) {
      const users = byRepository.get(repo);
      if (users === old) byRepository.delete(repo);
      else if (users instanceof Set) {
        users.delete(old);
        if (users.size === 1) byRepository.set(repo, users.values().next().value!);
      }
    }
  };
  const remove = (namespace: string, name: string) => {
    const names = byNamespace.get(namespace);
    const old = names?.get(name);
    if (!old) return;
    unindex(old);
    names!.delete(name);
    total--;
    if (names!.size === 0) byNamespace.delete(namespace);
  };
  /** Indexes the Deployment; returns the summary it replaced. */
  const upsert = (d: Deployment): DeploymentSummary | undefined => {
    if (!d?.metadata?.name || !d.metadata.namespace) return undefined;
    const summary = summarizeSharing(d, share);
    let names = byNamespace.get(summary.namespace);
    if (!names) byNamespace.set(summary.namespace, names = new Map());
    const old = names.get(summary.name);
    if (old) unindex(old);
    else total++;
    names.set(summary.name, summary);
    for (const repo of repositoriesOf(summary)) {
      const users = byRepository.get(repo);
      if (users === undefined) byRepository.set(repo, summary);
      else if (users instanceof Set) users.add(summary);
      else byRepository.set(repo, new Set([users, summary]));
    }
    return old;
  };
  const inScope = (namespace: string, scope: string | undefined) =>
    scope === undefined || namespace === scope;
  const countIn = (scope: string | undefined) =>
    scope === undefined ? total : byNamespace.get(scope)?.size ?? 0;
  const summariesIn = function* (scope: string | undefined) {
    const maps = scope === undefined ? byNamespace.values() : [byNamespace.get(scope)];
    for (const names of maps) if (names) yield* names.values();
  };
  const isCurrent = (s: ScopeState) =>
    s.listed && !s.relisting && clock.now() - s.lastContact <= idleTimeoutMs;

  /**
   * One (re)list of a scope, fed object by object by either kind of list. What was
   * indexed in the scope and is not seen again by finish() is gone.
   */
  const startListing = (scope: string | undefined) => {
    // Empty on the first list: nothing is copied for the common case.
    const stale = new Set<DeploymentSummary>(summariesIn(scope));
    return {
      item(d: Deployment, where: string) {
        const name = d?.metadata?.name;
        const namespace = d?.metadata?.namespace;
        if (typeof name !== "string" || !name || typeof namespace !== "string" || !namespace) {
          throw new WatchEventError(`${where} has no metadata.name or metadata.namespace`);
        }
        // Security: a namespaced list must only ever report its own namespace.
        if (!inScope(namespace, scope)) {
          throw new WatchEventError(`${where} is outside ${labelOf(scope)}`);
        }
        options.onObject?.("ADDED", d);
        const old = upsert(d);
        if (old) stale.delete(old);
      },
      finish() {
        for (const gone of stale) {
          remove(gone.namespace, gone.name);
          options.onObject?.("DELETED", {
            metadata: { namespace: gone.namespace, name: gone.name },
          });
        }
        stale.clear();
      },
    };
  };

  /** A paged list of the scope; returns its resourceVersion. */
  const relist = async (scope: string | undefined): Promise<string> => {
    const listing = startListing(scope);
    let continueToken: string | undefined;
    let resourceVersion = "";
    do {
      const page = await options.api.listDeployments(scope, { limit: pageSize, continueToken });
      for (const [i, d] of page.items.entries()) listing.item(d, `list item ${i}`);
      continueToken = page.continueToken;
      resourceVersion = page.resourceVersion;
    } while (continueToken);
    // An empty resourceVersion would make the watch start "now" and miss what changed meanwhile.
    if (!resourceVersion) throw new Error("the list answer carries no resourceVersion");
    listing.finish();
    return resourceVersion;
  };

  /** Applies one event; returns the resourceVersion to resume from. */
  const apply = (scope: string | undefined, event: WatchEvent): string => {
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
      if (!inScope(namespace, scope)) {
        throw new WatchEventError(`${event.type} watch event is outside ${labelOf(scope)}`);
      }
      options.onObject?.(event.type, event.object);
      if (event.type === "DELETED") remove(namespace, name);
      else upsert(event.object);
    }
    return event.object.metadata.resourceVersion;
  };

  const follow = async (scope: string | undefined, signal: AbortSignal) => {
    const label = labelOf(scope);
    const log = options.logger.child({ scope: label });
    const state = states.get(scope)!;
    let resourceVersion: string | undefined;
    let failures = 0;
    let expiredInARow = 0;
    let streamingList = options.streamingList ?? true;
    // The streaming list was just refused: the paged list that follows is the same relist.
    let refused = false;
    const synced = () => {
      state.relisting = false;
      state.lastContact = clock.now();
      log.info(state.listed ? "inventory relisted" : "inventory synced", {
        deployments: countIn(scope),
        total_deployments: total,
        streamed: streamingList,
      });
      state.listed = true;
      if (isSynced()) { for (const wake of [...syncWaiters]) wake(); }
    };
    while (!signal.aborted) {
      const watch = new AbortController();
      const stop = () => watch.abort();
      signal.addEventListener("abort", stop, { once: true });
      let idle = false;
      let cancelTimer = () => {};
      const arm = () => {
        cancelTimer();
        cancelTimer = clock.schedule(() => {
          idle = true;
          watch.abort();
        }, idleTimeoutMs);
      };
      const contact = () => {
        state.lastContact = clock.now();
        arm();
      };
      // Set while this stream is a streaming list that has not reached its end bookmark.
      let listing: ReturnType<typeof startListing> | undefined;
      try {
        if (resourceVersion === undefined) {
          if (!refused) options.onRelist?.(label);
          refused = false;
          if (streamingList) listing = startListing(scope);
          else {
            resourceVersion = await relist(scope);
            synced();
          }
        }
        const started = clock.now();
        let events = 0;
        arm();
        for await (
          const event of options.api.watchDeployments(scope, {
            resourceVersion: resourceVersion ?? "",
            sendInitialEvents: listing !== undefined,
            signal: watch.signal,
            timeoutSeconds: randomWatchTimeout(minWatchTimeout, random),
            onOpen: contact,
          })
        ) {
          contact();
          if (listing && event.type === "ADDED") {
            listing.item(event.object, "initial ADDED event");
          } else if (listing && event.type === "BOOKMARK" && event.object.initialEventsEnd) {
            listing.finish();
            listing = undefined;
            resourceVersion = event.object.metadata.resourceVersion;
            synced();
          } else {
            const rv = apply(scope, event);
            // Until the end bookmark, a resourceVersion is no place to resume from.
            if (!listing) resourceVersion = rv;
          }
          events++;
          failures = 0;
          expiredInARow = 0;
        }
        // A streaming list cut before its end bookmark is incomplete: list again.
        if (listing) throw new Error("the streaming list ended before its initial events did");
        // client-go treats this as an error too: a server that closes every watch at once
        // would otherwise be asked again in a tight loop.
        if (events === 0 && clock.now() - started < 1000) {
          throw new Error("the watch closed within a second without an event");
        }
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (listing && refusesStreamingList(err)) {
          // As client-go does on any watch-list error; remembered, so it is asked only once.
          streamingList = false;
          refused = true;
          log.info("the API server does not offer the streaming list; listing in pages", {
            error: describeError(err),
            hint: "Kubernetes 1.32+ offers it (the WatchList feature gate); paged lists work," +
              " with more memory and time at start-up",
          });
          continue;
        }
        if (idle) {
          options.onWatchIdle?.(label);
          log.warn(
            "watch idle: no event or bookmark in time; resuming from the last resourceVersion",
            {
              idle_timeout_ms: idleTimeoutMs,
              hint: "the connection may be dead (proxy, load balancer, NAT); if this repeats on a" +
                " quiet namespace, the API server may not send watch bookmarks",
            },
          );
          continue;
        }
        if (err instanceof Gone || (err instanceof KubeApiError && err.status === 410)) {
          resourceVersion = undefined;
          state.relisting = true;
          // One expiry is routine; expiring again right after a relist is not: back off.
          const delay = expiredInARow > 0 ? backoffDelay(expiredInARow - 1, 250, 10_000) : 0;
          expiredInARow++;
          log.info("watch expired (410 Gone); relisting", {
            retry_in_ms: delay > 0 ? delay : undefined,
          });
          if (delay > 0) await sleep(delay, signal);
          continue;
        }
        const delay = backoffDelay(failures++, 250, 10_000);
        if (err instanceof WatchEventError) {
          resourceVersion = undefined;
          state.relisting = true;
          options.onMalformedEvent?.(label);
          log.warn("malformed answer from the API server; relisting", {
            error: describeError(err),
            retry_in_ms: delay,
          });
        } else {
          options.onWatchError?.(label);
          const hint = err instanceof KubeApiError && err.status === 403
            ? "the worker's RBAC does not allow list/watch on deployments here; see docs/deployment.md"
            : undefined;
          log.warn("inventory list/watch failed; retrying", {
            error: describeError(err),
            retry_in_ms: delay,
            hint,
          });
        }
        await sleep(delay, signal);
      } finally {
        cancelTimer();
        signal.removeEventListener("abort", stop);
      }
    }
  };

  return {
    async run(signal) {
      await Promise.all(scopes.map((scope) => follow(scope, signal)));
    },
    synced: isSynced,
    whenSynced(signal) {
      if (isSynced() || signal.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = () => {
          syncWaiters.delete(done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        syncWaiters.add(done);
        signal.addEventListener("abort", done, { once: true });
      });
    },
    current: () => [...states.values()].every(isCurrent),
    scopes: () => Object.fromEntries(scopes.map((s) => [labelOf(s), isCurrent(states.get(s)!)])),
    candidates(repository) {
      const users = byRepository.get(repository);
      if (users === undefined) return [];
      return users instanceof Set ? [...users] : [users];
    },
    upsert(d) {
      if (!d?.metadata?.name || !d.metadata.namespace) return;
      options.onObject?.("MODIFIED", d);
      upsert(d);
    },
    size: () => total,
  };
}
