/**
 * The Deployments in scope, kept current by list + watch and indexed by image
 * repository, so an event is matched in memory: no list call per event. Thin
 * glue over three parts: the pure index (index.ts), one reflector per watched
 * namespace or one cluster-wide (reflector.ts, its calls in list_watch.ts:
 * list, streaming list, watch), and the scopes' sync and currency (sync.ts).
 * A scope is *current* only when listed, not relisting, and heard from within
 * the watch idle deadline; readiness reports it. A scope is *unavailable*
 * while it has never listed and its latest list failed (the RBAC of one
 * namespace is missing, say): the inventory is *settled* once every scope has
 * listed or failed, so events are matched against what could be listed and
 * their reports name what could not, instead of waiting for it.
 */

import { type Clock, REAL_CLOCK } from "../../lib/clock.ts";
import type { Logger } from "../../lib/log.ts";
import type { KubeApi } from "../kube/api.ts";
import type { Deployment } from "../kube/objects.ts";
import type { DeploymentSummary } from "../plan.ts";
import { createDeploymentIndex } from "./index.ts";
import {
  LIST_TIMEOUT_MS,
  MIN_WATCH_TIMEOUT_SECONDS,
  type ReflectorOptions,
  runReflector,
  WATCH_IDLE_TIMEOUT_MS,
} from "./reflector.ts";
import { createSyncTracker, type Scope, type UnavailableScope } from "./sync.ts";
import type { LabelSelector } from "../../lib/label_selector.ts";

export type { UnavailableScope } from "./sync.ts";
export {
  BOOKMARK_INTERVAL_MS,
  LIST_TIMEOUT_MS,
  MIN_WATCH_TIMEOUT_SECONDS,
  randomWatchTimeout,
  WATCH_IDLE_TIMEOUT_MS,
} from "./reflector.ts";

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
  /** How long a streaming list may be silent before it has failed; default LIST_TIMEOUT_MS. */
  listTimeoutMs?: number;
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
  /**
   * DEPLOYMENT_SELECTOR: list and watch ask the API server for these only; a
   * Deployment read by name (upsert) that no longer matches leaves the index
   * instead of coming back into it until the next relist.
   */
  selector?: LabelSelector;
}

/** The live index of Deployments in scope. */
export interface Inventory {
  /** Runs the list+watch loops until `signal` aborts. */
  run(signal: AbortSignal): Promise<void>;
  /** True once every scope has completed its first list. */
  synced(): boolean;
  /** Resolves once synced() is true, or when `signal` aborts. */
  whenSynced(signal: AbortSignal): Promise<void>;
  /**
   * True once every scope has completed a list or failed one, and from then on: events
   * are matched then, against the scopes that listed; unavailable() names the others.
   */
  settled(): boolean;
  /** Resolves once settled() is true, or when `signal` aborts. */
  whenSettled(signal: AbortSignal): Promise<void>;
  /** The scopes never listed whose latest list failed, sorted by label, each with its reason. */
  unavailable(): UnavailableScope[];
  /** True while every scope is current (see scopes()). */
  current(): boolean;
  /**
   * current() for /readyz, and when false one line naming the scopes that are not current
   * and why ("namespace b: 403 Forbidden: …"); the API's text, bounded, never a credential.
   */
  readiness(): { ok: boolean; detail?: string };
  /** Per scope label: listed, not relisting, and heard from within the idle deadline. */
  scopes(): Record<string, boolean>;
  /** Deployments with a container from `repository` (normalised). */
  candidates(repository: string): DeploymentSummary[];
  /** Replaces one Deployment's summary with a fresher copy (after a get or patch). */
  upsert(d: Deployment): void;
  size(): number;
}

/** Creates an inventory; call run() to fill and follow it. */
export function createInventory(options: InventoryOptions): Inventory {
  const scopes: Scope[] = options.namespaces.length > 0 ? [...options.namespaces] : [undefined];
  const clock = options.clock ?? REAL_CLOCK;
  const idleTimeoutMs = options.watchIdleTimeoutMs ?? WATCH_IDLE_TIMEOUT_MS;
  const index = createDeploymentIndex();
  const sync = createSyncTracker(scopes, { clock, idleTimeoutMs });
  const reflector: ReflectorOptions = {
    api: options.api,
    logger: options.logger,
    index,
    sync,
    clock,
    random: options.random ?? Math.random,
    pageSize: options.pageSize ?? 500,
    idleTimeoutMs,
    listTimeoutMs: options.listTimeoutMs ?? LIST_TIMEOUT_MS,
    minWatchTimeoutSeconds: options.minWatchTimeoutSeconds ?? MIN_WATCH_TIMEOUT_SECONDS,
    streamingList: options.streamingList ?? true,
    onRelist: options.onRelist,
    onWatchError: options.onWatchError,
    onWatchIdle: options.onWatchIdle,
    onMalformedEvent: options.onMalformedEvent,
    onObject: options.onObject,
  };

  return {
    async run(signal) {
      await Promise.all(scopes.map((scope) => runReflector(reflector, scope, signal)));
    },
    synced: sync.synced,
    whenSynced: sync.whenSynced,
    settled: sync.settled,
    whenSettled: sync.whenSettled,
    unavailable: sync.unavailable,
    current: sync.current,
    readiness: sync.readiness,
    scopes: sync.scopes,
    candidates: index.candidates,
    upsert(d) {
      if (!d?.metadata?.name || !d.metadata.namespace) return;
      if (options.selector && !options.selector.matches(d.metadata.labels)) {
        index.remove(d.metadata.namespace, d.metadata.name);
        return;
      }
      options.onObject?.("MODIFIED", d);
      index.upsert(d);
    },
    size: () => index.count(),
  };
}
