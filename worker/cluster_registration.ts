/**
 * Keeps this worker's cluster registered under its CLUSTER_NAME and, while the
 * worker serves events, announced to web (SPEC §12), one script per attempt
 * (worker/cluster_registration_script.ts). The first attempt is made at once;
 * then one every interval, one at once when the worker starts serving, and
 * after a failure (Valkey down) one every retryMs.
 *
 * So two clusters given one CLUSTER_NAME do not silently share claims: the
 * second refuses (conflict(): one error line naming both, logged once per
 * change; the worker reads no events meanwhile) and tries again every
 * interval; once the first has been silent for CLUSTER_LIVE_MS it takes the
 * name over, and says so. Replicas of one cluster share the name and the
 * identity. Trusts nothing it reads back: the script's answer is checked
 * where it is read.
 */

import type { Logger } from "../lib/log.ts";
import { type Clock, REAL_CLOCK } from "../lib/clock.ts";
import { HEARTBEAT_INTERVAL_MS } from "../shared/event_status.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";
import type { ClusterIdentity } from "./cluster_identity.ts";
import {
  NAME_HOLD_MS,
  registerCluster,
  type RegistrationOutcome,
} from "./cluster_registration_script.ts";

/** The one error line of a conflict: both clusters, and what to do. */
export function conflictLine(clusterName: string, other: string, self: string): string {
  return `CLUSTER_NAME "${clusterName}" is held by another cluster (${other}) — this worker is ${self}; give each cluster its own CLUSTER_NAME`;
}

/** Failures before Valkey first answered are not logged for this long (connections opening). */
export const STARTUP_GRACE_MS = 5000;

/** Options for startClusterRegistration. */
export interface ClusterRegistrationOptions {
  client: Pick<ValkeyCommands, "call">;
  clusterName: string;
  identity: ClusterIdentity;
  /** True while this replica serves events: only then is the cluster announced to web. */
  serving(): boolean;
  logger: Logger;
  signal: AbortSignal;
  clock?: Clock;
  intervalMs?: number;
  /** How often `serving` is looked at, so an announcement follows it quickly. */
  pollMs?: number;
  /** How soon a failed attempt (Valkey down) is tried again. */
  retryMs?: number;
  /** Called with the new conflict line (or undefined) whenever conflict() changes. */
  onConflictChange?(line: string | undefined): void;
}

/** The registration as the worker sees it. */
export interface ClusterRegistration {
  /** The one error line while another live cluster holds CLUSTER_NAME; undefined otherwise. */
  conflict(): string | undefined;
  /** True while the latest answer registered this cluster (false before the first, and in conflict). */
  registered(): boolean;
  /** Resolves once registered() is true, or when `signal` or the registration's signal aborts. */
  whenRegistered(signal: AbortSignal): Promise<void>;
  /** True while the latest successful attempt also scored the cluster for web (it was serving). */
  announced(): boolean;
  /** Resolves once the registration's signal aborted and the attempt in flight finished. */
  done: Promise<void>;
}

/** Starts registering at once; runs until `options.signal` aborts. */
export function startClusterRegistration(options: ClusterRegistrationOptions): ClusterRegistration {
  const clock = options.clock ?? REAL_CLOCK;
  const interval = options.intervalMs ?? HEARTBEAT_INTERVAL_MS;
  const { signal } = options;
  const status = createStatus(options);
  let dueAt = clock.now();
  // The latest answer scored the name: once serving starts, a registration is due at once
  // (unless the latest attempt failed: then retryMs decides).
  let announced = false;
  let inflight = Promise.resolve();

  const attempt = async (announce: boolean) => {
    const now = clock.now();
    try {
      const outcome = await registerCluster(options.client, {
        clusterName: options.clusterName,
        identity: options.identity,
        now,
        announce,
      });
      announced = outcome.kind !== "conflict" && announce;
      status.answered(outcome);
      dueAt = now + interval;
    } catch (err) {
      status.failed(err, now);
      dueAt = now + (options.retryMs ?? 1000);
    }
  };
  let cancel = () => {};
  const tick = async () => {
    if (signal.aborted) return;
    const serving = options.serving();
    if (
      clock.now() >= dueAt || (serving && !announced && !status.failing() && status.registered())
    ) {
      inflight = attempt(serving);
      await inflight;
    }
    if (!signal.aborted) cancel = clock.schedule(tick, options.pollMs ?? 250);
  };
  const done = new Promise<void>((resolve) => {
    const stop = () => {
      cancel();
      status.wake();
      inflight.then(resolve);
    };
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });
  void tick();
  return {
    conflict: status.conflict,
    registered: status.registered,
    whenRegistered: (waiting) => status.whenRegistered(waiting, signal),
    announced: () => announced && status.registered() && !status.failing(),
    done,
  };
}

/** What the answers so far say, the log lines their changes give, and who waits for them. */
function createStatus(options: ClusterRegistrationOptions) {
  const { logger, clusterName, identity } = options;
  const fields = { cluster_name: clusterName, identity: identity.about };
  let registered = false;
  let conflict: string | undefined;
  let everRegistered = false;
  let answeredOnce = false;
  let failingSince: number | undefined;
  let warned = false;
  const waiters = new Set<() => void>();
  const setConflict = (line: string | undefined, other?: string) => {
    if (line === conflict) return;
    conflict = line;
    if (line !== undefined) logger.error(line, { ...fields, other });
    options.onConflictChange?.(line);
  };
  const wake = () => {
    for (const waiter of [...waiters]) waiter();
  };
  return {
    conflict: () => conflict,
    registered: () => registered,
    failing: () => failingSince !== undefined,
    wake,
    answered(outcome: RegistrationOutcome) {
      answeredOnce = true;
      if (warned) logger.info("cluster heartbeat written again");
      failingSince = undefined;
      warned = false;
      if (outcome.kind === "conflict") {
        registered = false;
        setConflict(conflictLine(clusterName, outcome.other, identity.about), outcome.other);
        return;
      }
      if (outcome.kind === "taken_over") {
        logger.warn(
          `CLUSTER_NAME "${clusterName}" was registered by another cluster (${outcome.other}), silent for over ${
            NAME_HOLD_MS / 3_600_000
          } h: this cluster takes the name over`,
          { ...fields, other: outcome.other },
        );
      } else if (conflict !== undefined) {
        logger.info(`CLUSTER_NAME "${clusterName}" is this cluster's again`, fields);
      } else if (!everRegistered) logger.info("cluster name registered", fields);
      registered = everRegistered = true;
      setConflict(undefined);
      wake();
    },
    failed(err: unknown, now: number) {
      failingSince ??= now;
      // At start the connection is still opening: only a failure that lasts is worth a warning.
      const quiet = !answeredOnce && now - failingSince < STARTUP_GRACE_MS;
      if (!warned && !quiet) {
        warned = true;
        logger.warn("cluster heartbeat failed; web may not count this cluster as live", {
          error: describeValkeyError(err),
        });
      }
    },
    whenRegistered(waiting: AbortSignal, own: AbortSignal): Promise<void> {
      if (registered || waiting.aborted || own.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const finish = () => {
          waiters.delete(finish);
          waiting.removeEventListener("abort", finish);
          resolve();
        };
        waiters.add(finish);
        waiting.addEventListener("abort", finish, { once: true });
      });
    },
  };
}
