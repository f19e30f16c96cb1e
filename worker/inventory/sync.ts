/**
 * What the inventory tells the rest of the worker about its scopes: synced
 * (every scope listed once; the event handler waits for it) and current (each
 * scope listed, not relisting, and heard from within the watch idle deadline;
 * readiness reports it). The reflectors report into it; nothing here talks to
 * the API.
 */

import type { Clock } from "../../lib/clock.ts";

/** A scope is one watched namespace, or undefined for cluster-wide. */
export type Scope = string | undefined;

/** The label a scope has in logs, metrics and readiness. */
export const scopeLabel = (scope: Scope): string => scope ?? "(cluster)";

/** One scope as its reflector last reported it. */
interface ScopeState {
  listed: boolean;
  /** A list is due or running: the index may miss changes. */
  relisting: boolean;
  /** clock.now() of the last completed list, accepted watch or watch event. */
  lastContact: number;
}

/** The scopes' states and the waiters for the first sync. */
export interface SyncTracker {
  /** True once the scope has completed a list. */
  hasListed(scope: Scope): boolean;
  /** A list of the scope completed: wakes whenSynced() once every scope has one. */
  listed(scope: Scope): void;
  /** The scope's index may miss changes until its next list completes. */
  relisting(scope: Scope): void;
  /** The API server was heard from for the scope (an accepted watch or a watch event). */
  heard(scope: Scope): void;
  /** True once every scope has completed its first list. */
  synced(): boolean;
  /** Resolves once synced() is true, or when `signal` aborts. */
  whenSynced(signal: AbortSignal): Promise<void>;
  /** True while every scope is current. */
  current(): boolean;
  /** Per scope label: current or not. */
  scopes(): Record<string, boolean>;
}

/** Tracks `scopes`, none listed yet; current means heard from within `idleTimeoutMs`. */
export function createSyncTracker(
  scopes: readonly Scope[],
  options: { clock: Clock; idleTimeoutMs: number },
): SyncTracker {
  const { clock, idleTimeoutMs } = options;
  const states = new Map<Scope, ScopeState>(
    scopes.map((s) => [s, { listed: false, relisting: true, lastContact: -Infinity }]),
  );
  const waiters = new Set<() => void>();
  const isSynced = () => [...states.values()].every((s) => s.listed);
  const isCurrent = (s: ScopeState) =>
    s.listed && !s.relisting && clock.now() - s.lastContact <= idleTimeoutMs;

  return {
    hasListed: (scope) => states.get(scope)!.listed,
    listed(scope) {
      const state = states.get(scope)!;
      state.relisting = false;
      state.lastContact = clock.now();
      state.listed = true;
      if (isSynced()) { for (const wake of [...waiters]) wake(); }
    },
    relisting(scope) {
      states.get(scope)!.relisting = true;
    },
    heard(scope) {
      states.get(scope)!.lastContact = clock.now();
    },
    synced: isSynced,
    whenSynced(signal) {
      if (isSynced() || signal.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = () => {
          waiters.delete(done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        waiters.add(done);
        signal.addEventListener("abort", done, { once: true });
      });
    },
    current: () => [...states.values()].every(isCurrent),
    scopes: () => Object.fromEntries(scopes.map((s) => [scopeLabel(s), isCurrent(states.get(s)!)])),
  };
}
