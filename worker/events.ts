/**
 * Handles one event message end to end, as a chain of named steps: read it
 * (verify web's signature; parse with web's rules), expire it when it is
 * older than the catch-up window (reported as expired, nothing restarted),
 * admit it (time skew, replays), claim it for this replica of the cluster,
 * plan against the inventory's listable scopes, restart each planned
 * Deployment (claimed through Valkey, patched or in dry run only logged, a
 * Kubernetes Event per restart), then summarise: one pure fold of the
 * Deployments' outcomes gives the summary line, the metrics and the report
 * handed to the rollout feedback, with any namespace that could not be
 * listed named in it. Messages are untrusted: an invalid or unauthenticated
 * one is logged, counted and dropped, never thrown.
 */

import type { EventMessage } from "../shared/event.ts";
import { createEventVerifier, type EventVerifier } from "./event_verifier.ts";
import type { Logger } from "../lib/log.ts";
import type { Coordinator } from "./coordination.ts";
import {
  type EventFold,
  type EventSummary,
  skipOutcomes,
  summarizeEvent,
} from "./event_summary.ts";
import type { Feedback } from "./feedback/feedback.ts";
import { shortReason } from "./feedback/report.ts";
import type { Inventory } from "./inventory/inventory.ts";
import type { KubeApi } from "./kube/api.ts";
import { createMessageReader, type MessageReader } from "./message_reader.ts";
import type { WorkerMetrics } from "./metrics.ts";
import { senderFields } from "../shared/event_sender.ts";
import { OPEN_POLICY, type PlanPolicy, planRestarts, type RestartPlan } from "./plan.ts";
import { restartEach } from "./restart_each.ts";

export type { EventSummary } from "./event_summary.ts";

/** Everything the event handler uses. */
export interface EventHandlerDeps {
  inventory: Pick<Inventory, "candidates" | "upsert" | "unavailable">;
  api: KubeApi;
  coordinator: Coordinator;
  prefixes: readonly string[];
  /** The cluster's say over who restarts what (REQUIRE_OPT_IN); default: none mandatory. */
  policy?: PlanPolicy;
  logger: Logger;
  metrics: WorkerMetrics;
  dryRun: boolean;
  /** Events older than this (web's time) when taken up restart nothing: they are reported expired. */
  catchUpWindowMs: number;
  /** Receives each handled event's outcome; without it nothing is reported. */
  feedback?: Feedback;
  /** Names the cluster in the Kubernetes Events' reportingInstance. */
  clusterName?: string;
  now?: () => Date;
  /** Patches in flight at once for one event. */
  concurrency?: number;
  /** How long a restart waits for another event's restart in the dedup window to answer; default 10 s. */
  followWaitMs?: number;
  /** Signature, time and replay checks; without one, messages are not authenticated. */
  verifier?: EventVerifier;
}

/** What an event's handling came to: handled (with its summary), or why not. */
export type EventOutcome =
  | { kind: "handled"; summary: EventSummary }
  | { kind: "expired" | "dropped" | "other_replica" }
  /** Another replica still holds the event's claim: not done here, so not acknowledged. */
  | { kind: "busy" };

/** The handler's two steps: read a raw message, then handle the event it holds. */
export interface EventHandler {
  /** Verifies and parses a raw message; undefined once it is dropped (logged, counted). */
  read: MessageReader;
  /**
   * Handles a read event; resolves (never rejects) once it is done.
   * `restartAt` is the restartedAt its patches write: its own time, or a
   * later event's for the same image that follows it in the backlog.
   */
  handle(message: EventMessage, restartAt?: Date): Promise<EventOutcome>;
}

/** Creates the handler. */
export function createEventHandler(deps: EventHandlerDeps): EventHandler {
  const reader = createMessageReader({
    verifier: deps.verifier ?? createEventVerifier({ maxAgeMs: 0 }),
    prefixes: deps.prefixes,
    logger: deps.logger,
    metrics: deps.metrics,
  });
  const now = deps.now ?? (() => new Date());

  return {
    read: reader.read,
    async handle(message, restartAt) {
      const started = performance.now();
      const log = deps.logger.child({
        event_id: message.id,
        image: message.image,
        ...senderFields(message.sender),
      });
      if (await expire(deps, message, now(), log)) return { kind: "expired" };
      if (!reader.admit(message)) return { kind: "dropped" };
      const eventClaim = await claimEvent(deps, message, log);
      if (eventClaim === "duplicate") return { kind: "other_replica" };
      if (eventClaim === "busy") return { kind: "busy" };
      const plan = planEvent(deps, message, log);
      const unavailable = deps.inventory.unavailable();
      const restarted = await restartEach(plan.restarts, {
        message,
        log,
        inventory: deps.inventory,
        api: deps.api,
        coordinator: deps.coordinator,
        metrics: deps.metrics,
        dryRun: deps.dryRun,
        policy: deps.policy ?? OPEN_POLICY,
        clusterName: deps.clusterName ?? "default",
        now: deps.now,
        restartAt: restartAt ?? new Date(message.time),
        concurrency: deps.concurrency ?? 8,
        followWaitMs: deps.followWaitMs,
        firstPosition: plan.skipped.length,
      });
      const fold = summarizeEvent({
        event: message,
        matched: plan.matched,
        outcomes: [...skipOutcomes(plan.skipped), ...restarted],
        durationMs: Math.round((performance.now() - started) * 10) / 10,
      });
      publish(deps, fold, log, unavailable);
      if (eventClaim === "claimed") await deps.coordinator.finishEvent(message.id);
      deps.feedback?.begin({
        eventId: message.id,
        matched: plan.matched,
        deployments: fold.report,
        restarted: fold.restarted,
        ...unavailableReason(unavailable),
      });
      return { kind: "handled", summary: fold.summary };
    },
  };
}

/**
 * An event older than the catch-up window restarts nothing: the cluster was
 * away too long for the push to still be what CI waits on. It is reported as
 * expired, logged and counted; unless it was handled here before (a replay
 * of an old message), whose report stands.
 */
async function expire(
  deps: EventHandlerDeps,
  message: EventMessage,
  now: Date,
  log: Logger,
): Promise<boolean> {
  const ageMs = now.getTime() - Date.parse(message.time);
  if (!(ageMs > deps.catchUpWindowMs)) return false;
  if (await deps.coordinator.handled(message.id)) {
    deps.metrics.events.inc({ result: "other_replica" });
    log.debug("an expired event this cluster handled before: its report stands");
    return true;
  }
  deps.metrics.events.inc({ result: "expired" });
  const reason = `accepted ${Math.round(ageMs / 1000)}s before this cluster took it up, more ` +
    `than CATCH_UP_WINDOW (${Math.round(deps.catchUpWindowMs / 1000)}s): nothing restarted`;
  log.warn("event expired", { age_ms: ageMs, reason });
  deps.feedback?.begin({
    eventId: message.id,
    matched: 0,
    deployments: [],
    restarted: [],
    expired: true,
    reason,
  });
  return true;
}

/** The report's reason for scopes that could not be listed, if any. */
function unavailableReason(unavailable: readonly { reason: string }[]): { reason?: string } {
  if (unavailable.length === 0) return {};
  return {
    reason: shortReason(
      `not listable, not matched: ${unavailable.map((u) => u.reason).join("; ")}`,
    ),
  };
}

/**
 * Both replicas of a cluster may receive an event (a redelivery after a crash,
 * an older worker on the channel); one handles it, so the cluster restarts,
 * tracks and reports once.
 */
async function claimEvent(deps: EventHandlerDeps, message: EventMessage, log: Logger) {
  const claim = await deps.coordinator.claimEvent(message.id);
  if (claim === "duplicate") {
    deps.metrics.events.inc({ result: "other_replica" });
    log.debug("event handled by another replica of this cluster");
  }
  return claim;
}

/** Matches the event against the inventory; the skips are logged at once. */
function planEvent(deps: EventHandlerDeps, message: EventMessage, log: Logger): RestartPlan {
  const plan = planRestarts(message, deps.inventory.candidates(message.image), deps.policy);
  for (const s of plan.skipped) {
    log.info("skipped deployment", {
      namespace: s.namespace,
      deployment: s.name,
      reason: s.reason,
      ...(s.detail === undefined ? {} : { detail: s.detail }),
    });
  }
  return plan;
}

/** Counts the event and writes its summary line. */
function publish(
  deps: EventHandlerDeps,
  fold: EventFold,
  log: Logger,
  unavailable: readonly { scope: string }[],
): void {
  deps.metrics.events.inc({ result: "handled" });
  for (const [result, count] of Object.entries(fold.restarts)) {
    deps.metrics.restarts.inc({ result }, count);
  }
  deps.metrics.eventDuration.observe(fold.summary.duration_ms / 1000);
  const scopes = unavailable.length > 0
    ? { unavailable_scopes: unavailable.map((u) => u.scope) }
    : {};
  log[unavailable.length > 0 ? "warn" : fold.level]("event handled", {
    ...fold.summary,
    ...scopes,
  });
}
