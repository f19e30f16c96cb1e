/**
 * The Deployments in scope, kept current by list + watch and indexed by image
 * repository, so an event is matched in memory: no list call per event. One
 * list+watch loop per watched namespace, or one cluster-wide.
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

import { backoffDelay, sleep } from "../shared/backoff.ts";
import { describeError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import {
  type Deployment,
  type KubeApi,
  KubeApiError,
  type WatchEvent,
  WatchEventError,
} from "./kube_api.ts";
import { type DeploymentSummary, repositoriesOf, summarizeDeployment } from "./plan.ts";

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

/** The timers the inventory uses; injectable so tests decide when time passes. */
export interface Clock {
  now(): number;
  /** Runs `fn` after `ms`; returns a function that cancels it. */
  schedule(fn: () => void, ms: number): () => void;
}

const REAL_CLOCK: Clock = {
  now: () => Date.now(),
  schedule(fn, ms) {
    const id = setTimeout(fn, ms);
    return () => clearTimeout(id);
  },
};

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

const key = (namespace: string, name: string) => `${namespace}/${name}`;

/** The API server ended the watch because its resourceVersion is too old. */
class Gone extends Error {}

interface ScopeState {
  listed: boolean;
  /** A list is due or running: the index may miss changes. */
  relisting: boolean;
  /** clock.now() of the last completed list, accepted watch or watch event. */
  lastContact: number;
}

/** Creates an inventory; call run() to fill and follow it. */
export function createInventory(options: InventoryOptions): Inventory {
  const byKey = new Map<string, DeploymentSummary>();
  const byRepository = new Map<string, Set<string>>();
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

  const unindex = (k: string) => {
    const old = byKey.get(k);
    if (!old) return;
    for (const repo of repositoriesOf(old)) {
      const set = byRepository.get(repo);
      set?.delete(k);
      if (set?.size === 0) byRepository.delete(repo);
    }
    byKey.delete(k);
  };
  const upsert = (d: Deployment) => {
    if (!d?.metadata?.name || !d.metadata.namespace) return;
    const k = key(d.metadata.namespace, d.metadata.name);
    unindex(k);
    const summary = summarizeDeployment(d);
    byKey.set(k, summary);
    for (const repo of repositoriesOf(summary)) {
      let set = byRepository.get(repo);
      if (!set) byRepository.set(repo, set = new Set());
      set.add(k);
    }
  };
  const inScope = (k: string, scope: string | undefined) =>
    scope === undefined || k.startsWith(scope + "/");
  const countIn = (scope: string | undefined) => {
    let n = 0;
    for (const k of byKey.keys()) if (inScope(k, scope)) n++;
    return n;
  };
  const isCurrent = (s: ScopeState) =>
    s.listed && !s.relisting && clock.now() - s.lastContact <= idleTimeoutMs;

  const relist = async (scope: string | undefined): Promise<string> => {
    const seen = new Set<string>();
    let continueToken: string | undefined;
    let resourceVersion = "";
    do {
      const page = await options.api.listDeployments(scope, { limit: pageSize, continueToken });
      for (const [i, d] of page.items.entries()) {
        const name = d?.metadata?.name;
        const namespace = d?.metadata?.namespace;
        if (typeof name !== "string" || !name || typeof namespace !== "string" || !namespace) {
          throw new WatchEventError(`list item ${i} has no metadata.name or metadata.namespace`);
        }
        if (!inScope(key(namespace, name), scope)) {
          throw new WatchEventError(`list item ${i} is outside ${labelOf(scope)}`);
        }
        options.onObject?.("ADDED", d);
        upsert(d);
        seen.add(key(namespace, name));
      }
      continueToken = page.continueToken;
      resourceVersion = page.resourceVersion;
    } while (continueToken);
    // An empty resourceVersion would make the watch start "now" and miss what changed meanwhile.
    if (!resourceVersion) throw new Error("the list answer carries no resourceVersion");
    for (const k of [...byKey.keys()]) {
      if (!inScope(k, scope) || seen.has(k)) continue;
      const gone = byKey.get(k)!;
      unindex(k);
      options.onObject?.("DELETED", { metadata: { namespace: gone.namespace, name: gone.name } });
    }
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
      if (!inScope(key(namespace, name), scope)) {
        throw new WatchEventError(`${event.type} watch event is outside ${labelOf(scope)}`);
      }
      options.onObject?.(event.type, event.object);
      if (event.type === "DELETED") unindex(key(namespace, name));
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
      try {
        if (resourceVersion === undefined) {
          options.onRelist?.(label);
          resourceVersion = await relist(scope);
          state.relisting = false;
          state.lastContact = clock.now();
          log.info(state.listed ? "inventory relisted" : "inventory synced", {
            deployments: countIn(scope),
            total_deployments: byKey.size,
          });
          state.listed = true;
        }
        const started = clock.now();
        let events = 0;
        arm();
        for await (
          const event of options.api.watchDeployments(scope, {
            resourceVersion,
            signal: watch.signal,
            timeoutSeconds: randomWatchTimeout(minWatchTimeout, random),
            onOpen: contact,
          })
        ) {
          contact();
          resourceVersion = apply(scope, event);
          events++;
          failures = 0;
          expiredInARow = 0;
        }
        // client-go treats this as an error too: a server that closes every watch at once
        // would otherwise be asked again in a tight loop.
        if (events === 0 && clock.now() - started < 1000) {
          throw new Error("the watch closed within a second without an event");
        }
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
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
    synced: () => [...states.values()].every((s) => s.listed),
    current: () => [...states.values()].every(isCurrent),
    scopes: () => Object.fromEntries(scopes.map((s) => [labelOf(s), isCurrent(states.get(s)!)])),
    candidates(repository) {
      const keys = byRepository.get(repository);
      if (!keys) return [];
      return [...keys].map((k) => byKey.get(k)!).filter(Boolean);
    },
    upsert(d) {
      if (!d?.metadata?.name || !d.metadata.namespace) return;
      options.onObject?.("MODIFIED", d);
      upsert(d);
    },
    size: () => byKey.size,
  };
}
