/**
 * Handles one channel message end to end: re-validate with web's rules,
 * match against the inventory, claim each restart through Valkey, patch (or,
 * in dry-run, only log), and write one summary line. Messages are untrusted:
 * anyone who can publish to Valkey can send one, so an invalid one is logged,
 * counted and dropped, never thrown.
 */

import { describeError } from "../shared/errors.ts";
import { parseEventMessage } from "../shared/event.ts";
import type { Logger } from "../shared/log.ts";
import type { Coordinator } from "./coordination.ts";
import type { Inventory } from "./inventory.ts";
import type { KubeApi } from "./kube_api.ts";
import type { WorkerMetrics } from "./metrics.ts";
import { planRestarts } from "./plan.ts";
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
  now?: () => Date;
  /** Patches in flight at once for one event. */
  concurrency?: number;
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

async function mapLimited<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  });
  await Promise.all(workers);
  return results;
}

/** Creates the handler; it resolves (never rejects) once the event is done. */
export function createEventHandler(
  deps: EventHandlerDeps,
): (raw: string) => Promise<EventSummary | undefined> {
  const concurrency = deps.concurrency ?? 8;
  return async (raw) => {
    const started = performance.now();
    let message;
    try {
      message = parseEventMessage(raw, deps.prefixes);
    } catch (err) {
      deps.metrics.events.inc({ result: "invalid" });
      deps.logger.warn("dropped an invalid message", {
        error: describeError(err),
        bytes: raw.length,
      });
      return undefined;
    }
    const log = deps.logger.child({ event_id: message.id, image: message.image });
    const plan = planRestarts(message, deps.inventory.candidates(message.image));
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
    await mapLimited(plan.restarts, concurrency, async (target) => {
      const name = `${target.namespace}/${target.name}`;
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
        return;
      }
      const claim = await deps.coordinator.claim(message.id, name, message.image);
      if (claim === "duplicate" || claim === "recent") {
        const reason = claim === "duplicate"
          ? "claimed_by_another_worker"
          : "restarted_within_window";
        log.info("skipped deployment", { ...fields, reason });
        summary.skipped.push({ deployment: name, reason });
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
      } else if (outcome.status === "skipped") {
        log.info("skipped deployment", { ...fields, reason: outcome.reason });
        summary.skipped.push({ deployment: name, reason: outcome.reason });
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
      }
    });
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
    return summary;
  };
}
