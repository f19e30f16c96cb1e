/**
 * Coordination through Valkey so that replicas and bursts do not restart a
 * Deployment more than intended: one claim per cluster + event (two replicas
 * receive every event; only the one that claims it handles it: restarts,
 * tracks, reports), one per cluster + event + Deployment (the same guard per
 * restart, should the event claim have been unavailable), and
 * an optional window per cluster + Deployment + repository (several events for
 * the same image in a short burst restart it once). The window's key names
 * the event that restarted, and once its patch answered, the generation the
 * restart produced: a later event in the window follows that rollout instead
 * of restarting again (worker/restart_each.ts). Keys hold no secrets.
 */

import type { Logger } from "../lib/log.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";
import { productKey } from "../shared/valkey_keys.ts";

/** The answer to a claim. */
export type Claim = "claimed" | "duplicate" | "recent" | "unavailable";

/** What a window key says of the restart made within it. */
export type RecentRestart =
  /** Made by `eventId`; its rollout is the Deployment's `generation`. */
  | { kind: "made"; eventId: string; generation: number }
  /** Claimed by another event whose patch has not answered yet. */
  | { kind: "in_flight" }
  /** No restart holds the window (it lapsed, or the restart failed and released it). */
  | { kind: "gone" };

/**
 * The answer to an event claim: "duplicate" once another replica finished it,
 * "busy" while another still holds it after the longest wait (leave it pending).
 */
export type EventClaim = "claimed" | "duplicate" | "busy" | "unavailable";

/** Claims events and restarts. */
export interface Coordinator {
  /**
   * Claims the handling of one event for this replica of the cluster. While
   * another replica holds it, waits: for it to finish (duplicate) or for its
   * lease to lapse because it died (then claims it). A claim is held with a
   * short lease, renewed until finishEvent().
   */
  claimEvent(eventId: string): Promise<EventClaim>;
  /** Marks a claimed event handled (kept for the claim TTL) and stops renewing its lease. */
  finishEvent(eventId: string): Promise<void>;
  /** True when the event was handled to the end here (or Valkey cannot say: false). */
  handled(eventId: string): Promise<boolean>;
  claim(eventId: string, deployment: string, repository: string): Promise<Claim>;
  /** Forgets the burst window of a restart that failed, so a later event may try again. */
  release(deployment: string, repository: string): Promise<void>;
  /** Records in this event's window the generation its restart produced (no-op without a window). */
  restartMade(
    eventId: string,
    deployment: string,
    repository: string,
    generation: number,
  ): Promise<void>;
  /** What the window holds for a later event that got "recent". */
  recentRestart(deployment: string, repository: string): Promise<RecentRestart>;
}

const WINDOW_VALUE = /^([0-9a-f-]{36}) ([0-9]{1,15})$/;

/** Reads a window key's value: `<event id>` while its patch runs, `<event id> <generation>` after. */
export function readRecent(value: unknown): RecentRestart {
  if (typeof value !== "string") return { kind: "gone" };
  const made = WINDOW_VALUE.exec(value);
  if (!made) return { kind: "in_flight" };
  return { kind: "made", eventId: made[1], generation: Number(made[2]) };
}

/** Options for createCoordinator. */
export interface CoordinatorOptions {
  client: ValkeyCommands;
  clusterName: string;
  /** Burst window in milliseconds; 0 turns it off. */
  windowMs: number;
  logger: Logger;
  /** How long an event claim is remembered. */
  claimTtlSeconds?: number;
  /** How long a handling claim lives without renewal (a dead replica's lapses); default 5 s. */
  leaseMs?: number;
  /** How long a replica waits for another to finish an event before leaving it to it; default 120 s. */
  maxWaitMs?: number;
}

/** The value of a handled event's claim. */
const DONE = "done";

/** Creates the coordinator. */
export function createCoordinator(options: CoordinatorOptions): Coordinator {
  const { client } = options;
  const ttl = options.claimTtlSeconds ?? 86_400;
  const base = productKey(options.clusterName);
  const windowKey = (deployment: string, repository: string) =>
    `${base}:recent:${deployment}:${repository}`;
  const leaseMs = options.leaseMs ?? 5000;
  const maxWaitMs = options.maxWaitMs ?? 120_000;
  const owner = crypto.randomUUID();
  const renewals = new Map<string, ReturnType<typeof setInterval>>();
  const handlingKey = (eventId: string) => `${base}:handling:${eventId}`;
  // Only the event that holds the window records its generation, and the window keeps its end.
  const MADE = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end return 0`;
  // Renew only our own lease: a lapsed one may already be another replica's.
  const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
  return {
    async claimEvent(eventId) {
      const key = handlingKey(eventId);
      const started = Date.now();
      try {
        while (true) {
          const first = await client.call("SET", key, owner, "PX", leaseMs, "NX");
          if (first !== null) break;
          const holder = await client.call("GET", key);
          if (holder === DONE) return "duplicate";
          if (Date.now() - started > maxWaitMs) return "busy";
          await new Promise((r) => setTimeout(r, Math.min(250, leaseMs / 4)));
        }
      } catch (err) {
        // A missed restart is worse than a doubled one: handle it without a claim.
        options.logger.warn("event claim failed; handling the event without coordination", {
          event_id: eventId,
          error: describeValkeyError(err),
        });
        return "unavailable";
      }
      renewals.set(
        eventId,
        setInterval(() => {
          client.call("EVAL", RENEW, 1, key, owner, leaseMs).catch(() => {});
        }, Math.max(100, Math.floor(leaseMs / 3))),
      );
      return "claimed";
    },
    async finishEvent(eventId) {
      clearInterval(renewals.get(eventId));
      renewals.delete(eventId);
      await client.call("SET", handlingKey(eventId), DONE, "EX", ttl).catch(() => {});
    },
    async handled(eventId) {
      return await client.call("GET", handlingKey(eventId)).then((v) => v === DONE, () => false);
    },
    async claim(eventId, deployment, repository) {
      try {
        const first = await client.call(
          "SET",
          `${base}:event:${eventId}:${deployment}`,
          "1",
          "EX",
          ttl,
          "NX",
        );
        if (first === null) return "duplicate";
        if (options.windowMs <= 0) return "claimed";
        const fresh = await client.call(
          "SET",
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
      await client.call("DEL", windowKey(deployment, repository)).catch(() => 0);
    },
    async restartMade(eventId, deployment, repository, generation) {
      if (options.windowMs <= 0) return;
      const key = windowKey(deployment, repository);
      // Lost, a later event cannot follow this rollout and says it was skipped: never a false state.
      await client.call("EVAL", MADE, 1, key, eventId, `${eventId} ${generation}`).catch(() => 0);
    },
    async recentRestart(deployment, repository) {
      return readRecent(await client.call("GET", windowKey(deployment, repository)));
    },
  };
}
