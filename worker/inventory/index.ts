/**
 * The inventory's store: Deployment summaries by namespace and name, and by
 * image repository for matching. Pure and synchronous (no API, no clock), so
 * it is tested as tables. It is lean: per Deployment only what matching,
 * planning and restarting read, its short strings (namespace, repository, tag,
 * container name, pull policy) shared, and a repository used by one
 * Deployment points at it directly instead of through a Set. It trusts its
 * callers to have checked an object's scope; it ignores one without a name or
 * namespace.
 */

import type { Deployment } from "../kube/objects.ts";
import { type DeploymentSummary, repositoriesOf, summarizeSharing } from "../plan.ts";

/** A replacement of one namespace's Deployments (or all), fed one by one, as a list delivers them. */
export interface Replacement {
  /** Indexes one listed Deployment. */
  add(d: Deployment): void;
  /** Removes what was indexed before and not added since, calling `onRemoved` after each. */
  finish(onRemoved: (gone: DeploymentSummary) => void): void;
}

/** The Deployments in scope, by namespace and by repository. */
export interface DeploymentIndex {
  /** Indexes a Deployment (new or changed); returns the summary it replaced. */
  upsert(d: Deployment): DeploymentSummary | undefined;
  remove(namespace: string, name: string): void;
  /** Starts replacing what `namespace` holds (everything when undefined). */
  replace(namespace: string | undefined): Replacement;
  /** Deployments with a container from `repository` (normalised). */
  candidates(repository: string): DeploymentSummary[];
  /** Deployments in `namespace`, or in all namespaces when undefined. */
  count(namespace?: string): number;
}

/** A repository's users: one Deployment directly, or a Set once a second one uses it. */
type Users = DeploymentSummary | Set<DeploymentSummary>;

/** Creates an empty index. */
export function createDeploymentIndex(): DeploymentIndex {
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
  const summariesIn = function* (namespace: string | undefined) {
    const maps = namespace === undefined ? byNamespace.values() : [byNamespace.get(namespace)];
    for (const names of maps) if (names) yield* names.values();
  };

  return {
    upsert,
    remove,
    replace(namespace) {
      // Empty on the first list: nothing is copied for the common case.
      const stale = new Set<DeploymentSummary>(summariesIn(namespace));
      return {
        add(d) {
          const old = upsert(d);
          if (old) stale.delete(old);
        },
        finish(onRemoved) {
          for (const gone of stale) {
            remove(gone.namespace, gone.name);
            onRemoved(gone);
          }
          stale.clear();
        },
      };
    },
    candidates(repository) {
      const users = byRepository.get(repository);
      if (users === undefined) return [];
      return users instanceof Set ? [...users] : [users];
    },
    count: (namespace) => namespace === undefined ? total : byNamespace.get(namespace)?.size ?? 0,
  };
}
