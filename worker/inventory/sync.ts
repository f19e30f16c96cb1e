/**
 * What the inventory tells the rest of the worker about its scopes: synced
 * (every scope listed once; feedback resumes then), settled (every scope
 * listed or failed a list: events are matched then, so one scope that cannot
 * be listed holds none of them), unavailable (never listed, the latest list
 * failed: the reason goes into reports, /readyz and a metric), and current
 * (each scope listed, not relisting, and heard from within the watch idle
 * deadline; readiness reports it). The reflectors report into it; nothing here
 * talks to the API. Failure text comes from the API server: it is kept to one
 * bounded line without control characters before anyone reads it.
 */

import type { Clock } from "../../lib/clock.ts";

/** A scope is one watched namespace, or undefined for cluster-wide. */
export type Scope = string | undefined;

/** The label a scope has in logs, metrics and readiness. */
export const scopeLabel = (scope: Scope): string => scope ?? "(cluster)";

/** Where a scope is, as a reason's first words: "namespace team-b" or "cluster-wide". */
export const scopeWhere = (scope: Scope): string =>
  scope === undefined ? "cluster-wide" : `namespace ${scope}`;

/** The longest reason kept per scope, in characters. */
export const REASON_MAX_CHARS = 200;
/** How many scopes /readyz's detail names before it only counts the rest. */
const DETAIL_MAX_SCOPES = 3;

/** A scope that has never listed and whose latest list attempt failed. */
export interface UnavailableScope {
  /** The scope's label: the namespace, or "(cluster)". */
  scope: string;
  /** One line naming the namespace and the API's answer: "namespace b: 403 Forbidden: …". */
  reason: string;
}

/** One scope as its reflector last reported it. */
interface ScopeState {
  listed: boolean;
  /** A list is due or running: the index may miss changes. */
  relisting: boolean;
  /** clock.now() of the last completed list, accepted watch or watch event. */
  lastContact: number;
  /** The API's answer to the latest failed list, one line; cleared when a list completes. */
  listError: string | undefined;
  /** The API's answer to the latest failed watch, one line; cleared when the server is heard. */
  watchError: string | undefined;
}

/** The scopes' states and the waiters for the first sync and for settling. */
export interface SyncTracker {
  /** True once the scope has completed a list. */
  hasListed(scope: Scope): boolean;
  /** A list of the scope completed: it is available, and current until told otherwise. */
  listed(scope: Scope): void;
  /**
   * A list attempt of the scope failed with `answer` (the API's answer, one line). Returns
   * true when this made the scope unavailable (it had never listed and had not failed yet).
   */
  listFailed(scope: Scope, answer: string): boolean;
  /** A watch of the listed scope failed with `answer`: readiness says so while it lasts. */
  watchFailed(scope: Scope, answer: string): void;
  /** The scope's index may miss changes until its next list completes. */
  relisting(scope: Scope): void;
  /** The API server was heard from for the scope (an accepted watch or a watch event). */
  heard(scope: Scope): void;
  /** True once every scope has completed its first list. */
  synced(): boolean;
  /** Resolves once synced() is true, or when `signal` aborts. */
  whenSynced(signal: AbortSignal): Promise<void>;
  /** True once every scope has completed a list or failed one; it stays true. */
  settled(): boolean;
  /** Resolves once settled() is true, or when `signal` aborts. */
  whenSettled(signal: AbortSignal): Promise<void>;
  /** The scopes that have never listed and whose latest list failed, by label. */
  unavailable(): UnavailableScope[];
  /** True while every scope is current. */
  current(): boolean;
  /** Per scope label: current or not. */
  scopes(): Record<string, boolean>;
  /** current(), and when false a one-line detail naming the scopes that are not, and why. */
  readiness(): { ok: boolean; detail?: string };
}

/** Tracks `scopes`, none listed yet; current means heard from within `idleTimeoutMs`. */
export function createSyncTracker(
  scopes: readonly Scope[],
  options: { clock: Clock; idleTimeoutMs: number },
): SyncTracker {
  const { clock, idleTimeoutMs } = options;
  const states = new Map<Scope, ScopeState>(
    scopes.map((s) => [
      s,
      {
        listed: false,
        relisting: true,
        lastContact: -Infinity,
        listError: undefined,
        watchError: undefined,
      },
    ]),
  );
  // By label; Array.sort would put the cluster-wide scope (undefined) last unasked.
  const labels = new Map(scopes.map((s) => [scopeLabel(s), s]));
  const sorted = [...labels.keys()].sort().map((label) => labels.get(label));
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const check of [...waiters]) check();
  };
  const all = (test: (s: ScopeState) => boolean) => () => [...states.values()].every(test);
  const isSynced = all((s) => s.listed);
  const isSettled = all((s) => s.listed || s.listError !== undefined);
  const isCurrent = (s: ScopeState) =>
    s.listed && !s.relisting && clock.now() - s.lastContact <= idleTimeoutMs;
  const reason = (scope: Scope, text: string) => oneLine(`${scopeWhere(scope)}: ${text}`);
  const notCurrent = (scope: Scope, s: ScopeState) =>
    reason(scope, whyNotCurrent(s, idleTimeoutMs));

  return {
    hasListed: (scope) => states.get(scope)!.listed,
    listed(scope) {
      const state = states.get(scope)!;
      state.relisting = false;
      state.lastContact = clock.now();
      state.listed = true;
      state.listError = undefined;
      state.watchError = undefined;
      wake();
    },
    listFailed(scope, answer) {
      const state = states.get(scope)!;
      const settledBefore = state.listed || state.listError !== undefined;
      state.listError = oneLine(answer) || "the list failed";
      wake();
      return !settledBefore;
    },
    watchFailed(scope, answer) {
      states.get(scope)!.watchError = oneLine(answer) || "the watch failed";
    },
    relisting(scope) {
      states.get(scope)!.relisting = true;
    },
    heard(scope) {
      const state = states.get(scope)!;
      state.lastContact = clock.now();
      state.watchError = undefined;
    },
    synced: isSynced,
    whenSynced: (signal) => waitFor(waiters, isSynced, signal),
    settled: isSettled,
    whenSettled: (signal) => waitFor(waiters, isSettled, signal),
    unavailable: () =>
      sorted.flatMap((scope) => {
        const s = states.get(scope)!;
        return !s.listed && s.listError !== undefined
          ? [{ scope: scopeLabel(scope), reason: reason(scope, s.listError) }]
          : [];
      }),
    current: all(isCurrent),
    scopes: () => Object.fromEntries(scopes.map((s) => [scopeLabel(s), isCurrent(states.get(s)!)])),
    readiness() {
      const behind = sorted.filter((scope) => !isCurrent(states.get(scope)!));
      if (behind.length === 0) return { ok: true };
      const named = behind.slice(0, DETAIL_MAX_SCOPES).map((s) => notCurrent(s, states.get(s)!));
      const more = behind.length - named.length;
      if (more > 0) named.push(`and ${more} more scope${more === 1 ? "" : "s"} not current`);
      return { ok: false, detail: named.join("; ") };
    },
  };
}

/** Why a scope that is not current is not, in a few words after its name. */
function whyNotCurrent(s: ScopeState, idleTimeoutMs: number): string {
  if (!s.listed) return s.listError ?? "not listed yet";
  if (s.relisting) {
    return s.listError ? `relisting; the last list failed: ${s.listError}` : "relisting";
  }
  const silent = `nothing heard from the API server within ${idleTimeoutMs / 1000} s`;
  return s.watchError ? `${silent}; the last watch failed: ${s.watchError}` : silent;
}

/** Resolves once `done()` is true (checked on each wake-up), or when `signal` aborts. */
function waitFor(
  waiters: Set<() => void>,
  done: () => boolean,
  signal: AbortSignal,
): Promise<void> {
  if (done() || signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const finish = () => {
      waiters.delete(check);
      signal.removeEventListener("abort", finish);
      resolve();
    };
    const check = () => {
      if (done()) finish();
    };
    waiters.add(check);
    signal.addEventListener("abort", finish, { once: true });
  });
}

/**
 * `text` as one line of at most REASON_MAX_CHARS: control and format characters
 * (newlines, escapes, bidi overrides) become spaces, runs of space one. Security:
 * the text is the API server's; it ends up in reports, logs and /readyz.
 */
function oneLine(text: string): string {
  const line = text.replace(/[\p{Cc}\p{Cf}\s]+/gu, " ").trim();
  const chars = [...line];
  return chars.length <= REASON_MAX_CHARS
    ? line
    : `${chars.slice(0, REASON_MAX_CHARS - 1).join("")}…`;
}
