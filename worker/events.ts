/**
 * Handles one channel message end to end: check web's signature, time and
 * replays (with verify keys), re-validate with web's rules, claim
 * the event for this replica of the cluster, match against the inventory,
 * claim each restart through Valkey, patch (or, in dry-run, only log), record
 * a Kubernetes Event per restart, write one summary line, and hand the
 * outcome to the rollout feedback (report and tracking). Messages are untrusted:
 * anyone who can publish to Valkey can send one, so an invalid or
 * unauthenticated one is logged, counted and dropped, never thrown.
 */

import { describeError } from "../lib/error_text.ts";
import { type EventMessage, parseEventMessage } from "../shared/event.ts";
import { createEventVerifier, type DropReason, type EventVerifier } from "./event_verifier.ts";
import type { DeploymentReport } from "../shared/event_status.ts";
import type { Logger } from "../lib/log.ts";
import { pooledMap } from "../lib/pooled_map.ts";
import type { Coordinator } from "./coordination.ts";
import type { Feedback } from "./feedback.ts";
import type { Inventory } from "./inventory.ts";
import type { Deployment, KubeApi } from "./kube_api.ts";
import type { WorkerMetrics } from "./metrics.ts";
import { rolloutTriggeredEvent } from "./kube_events.ts";
import { planRestarts } from "./plan.ts";
import { restartFailureReason } from "./report.ts";
import { restartDeployment, type RestartOutcome } from "./restart.ts";

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

/** Summary of one handled event (also what the summary log line says). */
export interface EventSummary {
  event_id: string;
  image: string;
  tags: string[];
  /** Deployments that used the image with one of the tags (digest pins are skipped, not matched). */
  matched: number;
  restarted: string[];
  skipped: { deployment: string; reason: string }[];
  failed: { deployment: string; error: string }[];
  duration_ms: number;
}

/** Creates the handler; it resolves (never rejects) once the event is done. */
export function createEventHandler(
  deps: EventHandlerDeps,
): (raw: string) => Promise<EventSummary | undefined> {
  const concurrency = deps.concurrency ?? 8;
  const now = deps.now ?? (() => new Date());

  const verifier = deps.verifier ?? createEventVerifier({ maxAgeMs: 0 });
  // Security: only fields that are safe whatever the sender wrote (the reason, sizes, a
  // verified event's id and image); never the message bytes.
  const reject = (reason: DropReason, detail: string, fields: Record<string, unknown>) => {
    deps.metrics.droppedMessages.inc({ reason });
    deps.logger.warn("dropped a message that failed authentication", {
      reason,
      detail,
      ...fields,
    });
  };
  const invalid = (err: unknown, bytes: number) => {
    deps.metrics.events.inc({ result: "invalid" });
    deps.logger.warn("dropped an invalid message", { error: describeError(err), bytes });
  };

  /** The checked event, or undefined when the message is dropped. */
  const readMessage = async (raw: string): Promise<EventMessage | undefined> => {
    let checked;
    try {
      checked = await verifier.check(raw);
    } catch (err) {
      invalid(err, raw.length);
      return undefined;
    }
    if (!checked.ok) {
      reject(checked.reason, checked.detail, { bytes: raw.length });
      return undefined;
    }
    let message: EventMessage;
    try {
      message = parseEventMessage(checked.event, deps.prefixes);
    } catch (err) {
      invalid(err, raw.length);
      return undefined;
    }
    const admitted = verifier.admit(message);
    if (!admitted.ok) {
      reject(admitted.reason, admitted.detail, {
        event_id: message.id,
        image: message.image,
        time: message.time,
        key_id: checked.keyId,
      });
      return undefined;
    }
    return message;
  };

  return async (raw) => {
    const started = performance.now();
    const message = await readMessage(raw);
    if (!message) return undefined;
    const log = deps.logger.child({ event_id: message.id, image: message.image });
    // Both replicas of a cluster receive every event; one handles it, so the
    // cluster restarts, tracks and reports once.
    const eventClaim = await deps.coordinator.claimEvent(message.id);
    if (eventClaim === "duplicate") {
      deps.metrics.events.inc({ result: "other_replica" });
      log.debug("event handled by another replica of this cluster");
      return undefined;
    }
    const plan = planRestarts(message, deps.inventory.candidates(message.image));
    const entries: DeploymentReport[] = plan.skipped.map((s) => ({
      namespace: s.namespace,
      name: s.name,
      result: "skipped",
      reason: s.reason,
    }));
    const outcomes: DeploymentReport[] = new Array(plan.restarts.length);
    const restartedObjects: Deployment[] = [];
    // The audit trail in the cluster; failing it never fails the restart.
    const recordEvent = async (restarted: Deployment, fields: Record<string, unknown>) => {
      try {
        await deps.api.createEvent(
          restarted.metadata.namespace,
          rolloutTriggeredEvent(restarted, message, deps.clusterName ?? "default", now()),
        );
        deps.metrics.kubeEvents.inc({ result: "created" });
      } catch (err) {
        deps.metrics.kubeEvents.inc({ result: "failed" });
        log.warn("could not record the Kubernetes Event for the restart", {
          ...fields,
          error: describeError(err),
          hint: "the worker's Role needs create on events (core group) in this namespace",
        });
      }
    };
    const summary: EventSummary = {
      event_id: message.id,
      image: message.image,
      tags: message.tags,
      matched: plan.matched,
      restarted: [],
      skipped: plan.skipped.map((s) => ({
        deployment: `${s.namespace}/${s.name}`,
        reason: s.reason,
      })),
      failed: [],
      duration_ms: 0,
    };
    for (const s of plan.skipped) {
      log.info("skipped deployment", {
        namespace: s.namespace,
        deployment: s.name,
        reason: s.reason,
      });
    }
    await pooledMap(
      plan.restarts,
      concurrency,
      async (target, i) => {
        const name = `${target.namespace}/${target.name}`;
        const entry = (result: DeploymentReport["result"], reason?: string) => {
          outcomes[i] = { namespace: target.namespace, name: target.name, result };
          if (reason !== undefined) outcomes[i].reason = reason;
        };
        const fields = {
          namespace: target.namespace,
          deployment: target.name,
          containers: target.containers,
        };
        if (target.pullPolicyWarnings.length > 0) {
          log.warn(
            "imagePullPolicy is not Always: nodes that cached the tag may keep the old image",
            {
              ...fields,
              containers: target.pullPolicyWarnings,
            },
          );
        }
        if (deps.dryRun) {
          log.info("dry run: would restart deployment", fields);
          summary.skipped.push({ deployment: name, reason: "dry_run" });
          entry("dry_run");
          return;
        }
        const claim = await deps.coordinator.claim(message.id, name, message.image);
        if (claim === "duplicate" || claim === "recent") {
          const reason = claim === "duplicate"
            ? "claimed_by_another_worker"
            : "restarted_within_window";
          log.info("skipped deployment", { ...fields, reason });
          summary.skipped.push({ deployment: name, reason });
          entry("skipped", reason);
          return;
        }
        const outcome: RestartOutcome = await restartDeployment(target, {
          api: deps.api,
          event: message,
          now: deps.now,
          onObject: (d) => deps.inventory.upsert(d),
        });
        if (outcome.status === "restarted") {
          log.info("restarted deployment", fields);
          summary.restarted.push(name);
          entry("restarted");
          restartedObjects.push(outcome.deployment);
          await recordEvent(outcome.deployment, fields);
        } else if (outcome.status === "skipped") {
          log.info("skipped deployment", { ...fields, reason: outcome.reason });
          summary.skipped.push({ deployment: name, reason: outcome.reason });
          entry("skipped", outcome.reason);
        } else {
          await deps.coordinator.release(name, message.image);
          const hint = outcome.httpStatus === 403
            ? "the worker's ServiceAccount may not patch this Deployment: check the RoleBinding and the admission policy"
            : undefined;
          log.error("restart failed", {
            ...fields,
            error: outcome.error,
            status: outcome.httpStatus,
            hint,
          });
          summary.failed.push({ deployment: name, error: outcome.error });
          entry("failed", restartFailureReason(outcome.error));
        }
      },
    );
    summary.duration_ms = Math.round((performance.now() - started) * 10) / 10;
    deps.metrics.events.inc({ result: "handled" });
    deps.metrics.restarts.inc({ result: "restarted" }, summary.restarted.length);
    for (const s of summary.skipped) {
      deps.metrics.restarts.inc({ result: s.reason === "dry_run" ? "dry_run" : "skipped" });
    }
    deps.metrics.restarts.inc({ result: "failed" }, summary.failed.length);
    deps.metrics.eventDuration.observe(summary.duration_ms / 1000);
    const level = summary.failed.length > 0 ? "error" : "info";
    log[level]("event handled", { ...summary });
    if (eventClaim === "claimed") await deps.coordinator.finishEvent(message.id);
    deps.feedback?.begin({
      eventId: message.id,
      matched: plan.matched,
      deployments: [...entries, ...outcomes.filter(Boolean)],
      restarted: restartedObjects,
    });
    return summary;
  };
}
