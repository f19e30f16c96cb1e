/**
 * The Deployments in scope, kept current by list + watch and indexed by image
 * repository, so an event is matched in memory: no list call per event. One
 * list+watch loop per watched namespace, or one cluster-wide. Watches resume
 * from the last resourceVersion (bookmarks keep it fresh); an expired one
 * (410 Gone) triggers a relist. API objects are untrusted; only summaries are kept.
 */

import { backoffDelay, sleep } from "../shared/backoff.ts";
import { describeError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { type Deployment, type KubeApi, KubeApiError } from "./kube_api.ts";
import { type DeploymentSummary, repositoriesOf, summarizeDeployment } from "./plan.ts";

/** Options for createInventory. */
export interface InventoryOptions {
  api: KubeApi;
  /** Namespaces to watch; empty means cluster-wide. */
  namespaces: readonly string[];
  logger: Logger;
  pageSize?: number;
  watchTimeoutSeconds?: number;
  /** Reports each relist and each watch restart, for metrics. */
  onRelist?: (scope: string) => void;
  onWatchError?: (scope: string) => void;
}

/** The live index of Deployments in scope. */
export interface Inventory {
  /** Runs the list+watch loops until `signal` aborts. */
  run(signal: AbortSignal): Promise<void>;
  /** True once every scope has completed its first list. */
  synced(): boolean;
  /** Deployments with a container from `repository` (normalised). */
  candidates(repository: string): DeploymentSummary[];
  /** Replaces one Deployment's summary with a fresher copy (after a get or patch). */
  upsert(d: Deployment): void;
  size(): number;
}

const key = (namespace: string, name: string) => `${namespace}/${name}`;

class Gone extends Error {}

/** Creates an inventory; call run() to fill and follow it. */
export function createInventory(options: InventoryOptions): Inventory {
  const byKey = new Map<string, DeploymentSummary>();
  const byRepository = new Map<string, Set<string>>();
  const scopes: (string | undefined)[] = options.namespaces.length > 0
    ? [...options.namespaces]
    : [undefined];
  const syncedScopes = new Set<string | undefined>();
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

  const relist = async (scope: string | undefined): Promise<string> => {
    const seen = new Set<string>();
    let continueToken: string | undefined;
    let resourceVersion = "";
    do {
      const page = await options.api.listDeployments(scope, { limit: pageSize, continueToken });
      for (const d of page.items) {
        upsert(d);
        seen.add(key(d.metadata.namespace, d.metadata.name));
      }
      continueToken = page.continueToken;
      resourceVersion = page.resourceVersion;
    } while (continueToken);
    for (const k of [...byKey.keys()]) if (inScope(k, scope) && !seen.has(k)) unindex(k);
    return resourceVersion;
  };

  const follow = async (scope: string | undefined, signal: AbortSignal) => {
    const label = scope ?? "(cluster)";
    const log = options.logger.child({ scope: label });
    let resourceVersion: string | undefined;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (resourceVersion === undefined) {
          options.onRelist?.(label);
          resourceVersion = await relist(scope);
          if (!syncedScopes.has(scope)) log.info("inventory synced", { deployments: byKey.size });
          syncedScopes.add(scope);
        }
        for await (
          const event of options.api.watchDeployments(
            scope,
            resourceVersion,
            signal,
            options.watchTimeoutSeconds,
          )
        ) {
          if (event.type === "ERROR") {
            if (event.object.code === 410) throw new Gone();
            throw new Error(`watch error ${event.object.code}: ${event.object.message ?? ""}`);
          }
          resourceVersion = event.object.metadata?.resourceVersion ?? resourceVersion;
          if (event.type === "ADDED" || event.type === "MODIFIED") upsert(event.object);
          else if (event.type === "DELETED") {
            unindex(key(event.object.metadata.namespace, event.object.metadata.name));
          }
        }
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof Gone || (err instanceof KubeApiError && err.status === 410)) {
          log.info("watch expired (410 Gone); relisting");
          resourceVersion = undefined;
          continue;
        }
        options.onWatchError?.(label);
        const delay = backoffDelay(failures++, 250, 10_000);
        const hint = err instanceof KubeApiError && err.status === 403
          ? "the worker's RBAC does not allow list/watch on deployments here; see docs/deployment.md"
          : undefined;
        log.warn("inventory list/watch failed; retrying", {
          error: describeError(err),
          retry_in_ms: delay,
          hint,
        });
        await sleep(delay, signal);
      }
    }
  };

  return {
    async run(signal) {
      await Promise.all(scopes.map((scope) => follow(scope, signal)));
    },
    synced: () => syncedScopes.size === scopes.length,
    candidates(repository) {
      const keys = byRepository.get(repository);
      if (!keys) return [];
      return [...keys].map((k) => byKey.get(k)!).filter(Boolean);
    },
    upsert,
    size: () => byKey.size,
  };
}
