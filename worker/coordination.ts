/**
 * Coordination through Valkey so that replicas and bursts do not restart a
 * Deployment more than intended: one claim per cluster + event (two replicas
 * receive every event; only the one that claims it handles it: restarts,
 * tracks, reports), one per cluster + event + Deployment (the same guard per
 * restart, should the event claim have been unavailable), and
 * an optional window per cluster + Deployment + repository (several events for
 * the same image in a short burst restart it once). Keys hold no secrets.
 */

import type { Valkey } from "iovalkey";
import type { Logger } from "../shared/log.ts";
import { describeValkeyError } from "../shared/valkey.ts";

/** The answer to a claim. */
export type Claim = "claimed" | "duplicate" | "recent" | "unavailable";

/** The answer to an event claim. */
export type EventClaim = "claimed" | "duplicate" | "unavailable";

/** Claims events and restarts. */
export interface Coordinator {
  /** Claims the handling of one event for this replica of the cluster. */
  claimEvent(eventId: string): Promise<EventClaim>;
  claim(eventId: string, deployment: string, repository: string): Promise<Claim>;
  /** Forgets the burst window of a restart that failed, so a later event may try again. */
  release(deployment: string, repository: string): Promise<void>;
}

/** Options for createCoordinator. */
export interface CoordinatorOptions {
  client: Valkey;
  clusterName: string;
  /** Burst window in milliseconds; 0 turns it off. */
  windowMs: number;
  logger: Logger;
  /** How long an event claim is remembered. */
  claimTtlSeconds?: number;
}

const PREFIX = "kuberollouttrigger";

/** Creates the coordinator. */
export function createCoordinator(options: CoordinatorOptions): Coordinator {
  const ttl = options.claimTtlSeconds ?? 86_400;
  const base = `${PREFIX}:${options.clusterName}`;
  const windowKey = (deployment: string, repository: string) =>
    `${base}:recent:${deployment}:${repository}`;
  return {
    async claimEvent(eventId) {
      try {
        const first = await options.client.set(`${base}:handling:${eventId}`, "1", "EX", ttl, "NX");
        return first === null ? "duplicate" : "claimed";
      } catch (err) {
        // A missed restart is worse than a doubled one: handle it without a claim.
        options.logger.warn("event claim failed; handling the event without coordination", {
          event_id: eventId,
          error: describeValkeyError(err),
        });
        return "unavailable";
      }
    },
    async claim(eventId, deployment, repository) {
      try {
        const first = await options.client.set(
          `${base}:event:${eventId}:${deployment}`,
          "1",
          "EX",
          ttl,
          "NX",
        );
        if (first === null) return "duplicate";
        if (options.windowMs <= 0) return "claimed";
        const fresh = await options.client.set(
          windowKey(deployment, repository),
          eventId,
          "PX",
          options.windowMs,
          "NX",
        );
        return fresh === null ? "recent" : "claimed";
      } catch (err) {
        // A missed restart is worse than a doubled one: go ahead without a claim.
        options.logger.warn("restart claim failed; restarting without coordination", {
          deployment,
          error: describeValkeyError(err),
        });
        return "unavailable";
      }
    },
    async release(deployment, repository) {
      if (options.windowMs <= 0) return;
      await options.client.del(windowKey(deployment, repository)).catch(() => 0);
    },
  };
}
