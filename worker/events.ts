/**
 * Handles one channel message end to end, as a chain of named steps: read it
 * (verify web's signature, time and replays; parse with web's rules; admit),
 * claim the event for this replica of the cluster, plan against the
 * inventory, restart each planned Deployment (claimed through Valkey, patched
 * or in dry run only logged, a Kubernetes Event per restart), then summarise:
 * one pure fold of the Deployments' outcomes gives the summary line, the
 * metrics and the report handed to the rollout feedback. Messages are
 * untrusted: an invalid or unauthenticated one is logged, counted and dropped,
 * never thrown.
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
import type { Inventory } from "./inventory/inventory.ts";
import type { KubeApi } from "./kube/api.ts";
import { createMessageReader } from "./message_reader.ts";
import type { WorkerMetrics } from "./metrics.ts";
import { planRestarts, type RestartPlan } from "./plan.ts";
import { restartEach } from "./restart_each.ts";

export type { EventSummary } from "./event_summary.ts";

/** Everything the event handler uses. */
export interface EventHandlerDeps {
  inventory: Inventory;
  api: KubeApi;
  coordinator: Coordinator;
  prefixes: readonly string[];
  logger: Logger;
  metrics: WorkerMetrics;
  dryRun: boolean;
  /** Receives each handled event's outcome; without it nothing is reported. */
  feedback?: Feedback;
  /** Names the cluster in the Kubernetes Events' reportingInstance. */
  clusterName?: string;
  now?: () => Date;
  /** Patches in flight at once for one event. */
  concurrency?: number;
  /** Signature, time and replay checks; without one, messages are not authenticated. */
  verifier?: EventVerifier;
}

/** Creates the handler; it resolves (never rejects) once the event is done. */
export function createEventHandler(
  deps: EventHandlerDeps,
): (raw: string) => Promise<EventSummary | undefined> {
  const readMessage = createMessageReader({
    verifier: deps.verifier ?? createEventVerifier({ maxAgeMs: 0 }),
    prefixes: deps.prefixes,
    logger: deps.logger,
    metrics: deps.metrics,
  });

  return async (raw) => {
    const started = performance.now();
    const message = await readMessage(raw);
    if (!message) return undefined;
    const log = deps.logger.child({ event_id: message.id, image: message.image });
    const eventClaim = await claimEvent(deps, message, log);
    if (eventClaim === "duplicate") return undefined;
    const plan = planEvent(deps, message, log);
    const restarted = await restartEach(plan.restarts, {
      message,
      log,
      inventory: deps.inventory,
      api: deps.api,
      coordinator: deps.coordinator,
      metrics: deps.metrics,
      dryRun: deps.dryRun,
      clusterName: deps.clusterName ?? "default",
      now: deps.now,
      concurrency: deps.concurrency ?? 8,
      firstPosition: plan.skipped.length,
    });
    const fold = summarizeEvent({
      event: message,
      matched: plan.matched,
      outcomes: [...skipOutcomes(plan.skipped), ...restarted],
      durationMs: Math.round((performance.now() - started) * 10) / 10,
    });
    publish(deps, fold, log);
    if (eventClaim === "claimed") await deps.coordinator.finishEvent(message.id);
    deps.feedback?.begin({
      eventId: message.id,
      matched: plan.matched,
      deployments: fold.report,
      restarted: fold.restarted,
    });
    return fold.summary;
  };
}

/**
 * Both replicas of a cluster receive every event; one handles it, so the
 * cluster restarts, tracks and reports once.
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
  const plan = planRestarts(message, deps.inventory.candidates(message.image));
  for (const s of plan.skipped) {
    log.info("skipped deployment", {
      namespace: s.namespace,
      deployment: s.name,
      reason: s.reason,
    });
  }
  return plan;
}

/** Counts the event and writes its summary line. */
function publish(deps: EventHandlerDeps, fold: EventFold, log: Logger): void {
  deps.metrics.events.inc({ result: "handled" });
  for (const [result, count] of Object.entries(fold.restarts)) {
    deps.metrics.restarts.inc({ result }, count);
  }
  deps.metrics.eventDuration.observe(fold.summary.duration_ms / 1000);
  log[fold.level]("event handled", { ...fold.summary });
}
