/**
 * Announces the cluster to web (SPEC §12): while this replica is ready, it
 * sets its cluster's score in CLUSTERS_KEY to now, at once when it becomes
 * ready and then every HEARTBEAT_INTERVAL_MS, and drops members silent for a
 * day. Replicas of one cluster share one member (the cluster name), so two
 * replicas are one cluster. A failed heartbeat is logged once per change and
 * tried again on the next tick; the worker keeps working.
 */

import type { Logger } from "../../lib/log.ts";
import { CLUSTERS_KEY, HEARTBEAT_INTERVAL_MS } from "../../shared/event_status.ts";
import { describeValkeyError } from "../../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../../shared/valkey_client.ts";
import { type Clock, REAL_CLOCK } from "../../lib/clock.ts";

/** Members older than this are removed from CLUSTERS_KEY. */
export const CLUSTER_FORGET_MS = 86_400_000;

/** Options for startHeartbeat. */
export interface HeartbeatOptions {
  client: Pick<ValkeyCommands, "transaction">;
  clusterName: string;
  /** True while the replica is ready (inventory current and subscribed). */
  ready(): boolean;
  logger: Logger;
  signal: AbortSignal;
  clock?: Clock;
  intervalMs?: number;
  /** How often readiness is looked at, so a beat follows becoming ready quickly. */
  pollMs?: number;
}

/** Runs until `signal` aborts; resolves then. */
export function startHeartbeat(options: HeartbeatOptions): Promise<void> {
  const clock = options.clock ?? REAL_CLOCK;
  const interval = options.intervalMs ?? HEARTBEAT_INTERVAL_MS;
  const poll = options.pollMs ?? 250;
  let lastBeat = -Infinity;
  let wasReady = false;
  let failing = false;
  let busy = false;
  return new Promise((resolve) => {
    let cancel = () => {};
    const tick = async () => {
      if (options.signal.aborted) return;
      const ready = options.ready();
      const due = ready && (!wasReady || clock.now() - lastBeat >= interval);
      wasReady = ready;
      if (due && !busy) {
        busy = true;
        const now = clock.now();
        try {
          await options.client.transaction([
            ["ZADD", CLUSTERS_KEY, now, options.clusterName],
            ["ZREMRANGEBYSCORE", CLUSTERS_KEY, "-inf", now - CLUSTER_FORGET_MS],
          ]);
          lastBeat = now;
          if (failing) options.logger.info("cluster heartbeat written again");
          failing = false;
        } catch (err) {
          // Not ready again until it lands: wasReady false makes the next tick beat at once.
          wasReady = false;
          if (!failing) {
            options.logger.warn(
              "cluster heartbeat failed; web may not count this cluster as live",
              {
                error: describeValkeyError(err),
              },
            );
          }
          failing = true;
        } finally {
          busy = false;
        }
      }
      if (!options.signal.aborted) cancel = clock.schedule(tick, poll);
    };
    options.signal.addEventListener("abort", () => {
      cancel();
      resolve();
    }, { once: true });
    void tick();
  });
}
