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

import { EVENT_ID } from "../shared/event.ts";
import type { Logger } from "../lib/log.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";
import { productKey } from "../shared/valkey_keys.ts";
import { type StateSeal, UNSEALED } from "./sealed_state.ts";

/** The answer to a claim. */
export type Claim = "claimed" | "duplicate" | "recent" | "unavailable";

/** A restart recorded in its window, once its patch answered. */
export interface MadeRestart {
  /** The event that made it. */
  eventId: string;
  /** The generation the patch produced. */
  generation: number;
  /** The restartedAt it wrote (ms). */
  restartedAt: number;
  /** When its first patch attempt started, by the worker's clock (ms): no earlier than its effect. */
  patchedAt: number;
}

/** What a window key says of the restart made within it. */
export type RecentRestart =
  | ({ kind: "made" } & MadeRestart)
  /** Claimed by another event whose patch has not answered yet (or a record not sealed here). */
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
  /**
   * Forgets the burst window this event holds (its restart failed or made
   * nothing), so a later event restarts instead of waiting for it.
   */
  release(eventId: string, deployment: string, repository: string): Promise<void>;
  /** Records in this event's window the restart its patch made (no-op without a window). */
  restartMade(deployment: string, repository: string, made: MadeRestart): Promise<void>;
  /** What the window holds for a later event that got "recent". */
  recentRestart(deployment: string, repository: string): Promise<RecentRestart>;
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/**
 * Reads a window key's opened value: the claiming event's id while its patch
 * runs, the JSON of a MadeRestart after. Anything else reads as a restart in
 * flight, which a later event never follows (it restarts or ends skipped).
 */
export function readRecent(value: string | undefined | null): RecentRestart {
  if (value === null || value === undefined) return { kind: "gone" };
  if (EVENT_ID.test(value)) return { kind: "in_flight" };
  let made: Record<string, unknown>;
  try {
    made = JSON.parse(value);
  } catch {
    return { kind: "in_flight" };
  }
  const { eventId, generation, restartedAt, patchedAt } = made ?? {};
  if (
    typeof eventId !== "string" || !EVENT_ID.test(eventId) || !isCount(generation) ||
    !isCount(restartedAt) || !isCount(patchedAt)
  ) return { kind: "in_flight" };
  return { kind: "made", eventId, generation, restartedAt, patchedAt };
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
  /** Seals the window's record of a restart with the cluster's key (worker/sealed_state.ts). */
  seal?: StateSeal;
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
  const seal = options.seal ?? UNSEALED;
  // Only the event that holds the window records its restart, and the window keeps its end.
  const MADE = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end return 0`;
  // Only the event that holds the window (claimed, patch not answered) gives it up.
  const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1]) end return 0`;
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
    async release(eventId, deployment, repository) {
      if (options.windowMs <= 0) return;
      await client.call("EVAL", RELEASE, 1, windowKey(deployment, repository), eventId)
        .catch(() => 0);
    },
    async restartMade(deployment, repository, made) {
      if (options.windowMs <= 0) return;
      const key = windowKey(deployment, repository);
      const value = seal.seal(key, JSON.stringify(made));
      // Lost, a later event cannot follow this rollout and restarts or says skipped: never a false state.
      await client.call("EVAL", MADE, 1, key, made.eventId, value).catch(() => 0);
    },
    async recentRestart(deployment, repository) {
      const key = windowKey(deployment, repository);
      const raw = await client.call("GET", key);
      if (typeof raw !== "string") return { kind: "gone" };
      // The claiming event's bare id is written before any patch; the record after it is sealed.
      if (EVENT_ID.test(raw)) return { kind: "in_flight" };
      const opened = await seal.open(key, raw);
      // Not sealed by this cluster: nothing to follow, so the later event restarts itself.
      return opened === undefined ? { kind: "gone" } : readRecent(opened);
    },
  };
}
