/**
 * The "restart each" step of handling an event: for every planned restart, at
 * most `concurrency` at a time, claim it through Valkey, patch it (or, in dry
 * run, only log), and settle its one outcome — logged and kept the moment it
 * is known, so the summary lists restarts in the order they finished — then
 * record a Kubernetes Event for a restart. A Deployment another event of the
 * same image restarted within RESTART_DEDUP_WINDOW is not restarted again:
 * this event follows that restart's rollout and reports its real outcome.
 * Never throws for a failed restart: the failure is its outcome.
 */

import { describeError } from "../lib/error_text.ts";
import type { EventMessage } from "../shared/event.ts";
import type { Logger } from "../lib/log.ts";
import { pooledMap } from "../lib/pooled_map.ts";
import type { Coordinator } from "./coordination.ts";
import type { DeploymentOutcome } from "./event_summary.ts";
import type { Inventory } from "./inventory/inventory.ts";
import type { KubeApi } from "./kube/api.ts";
import type { Deployment } from "./kube/objects.ts";
import { rolloutTriggeredEvent } from "./kube/events.ts";
import type { WorkerMetrics } from "./metrics.ts";
import { planFresh, type PlannedRestart, type PlanPolicy, refusalOf } from "./plan.ts";
import { carriesRestart, restartDeployment } from "./restart.ts";
import { cannotFollow } from "./followed_restart.ts";

/** What restarting an event's Deployments needs. */
export interface RestartEachOptions {
  message: EventMessage;
  /** The event's logger (it carries event_id and image). */
  log: Logger;
  inventory: Pick<Inventory, "upsert">;
  api: KubeApi;
  coordinator: Coordinator;
  metrics: WorkerMetrics;
  dryRun: boolean;
  /** The cluster's say (REQUIRE_OPT_IN), applied again to what a restart reads fresh. */
  policy: PlanPolicy;
  clusterName: string;
  now?: () => Date;
  /** The restartedAt every patch writes: the event's time (worker/restart.ts says why). */
  restartAt: Date;
  /** Patches in flight at once. */
  concurrency: number;
  /** How long to wait for the patch of the restart that holds the window; default 10 s. */
  followWaitMs?: number;
  /** The position of the first restart in the plan (after its skips). */
  firstPosition: number;
}

/** One target as the steps below see it. */
interface Target {
  target: PlannedRestart;
  /** Its place in the plan. */
  position: number;
  /** What every log line about it carries. */
  fields: { namespace: string; deployment: string; containers: string[] };
  options: RestartEachOptions;
  /** Logs the outcome and keeps it: the one place an outcome is recorded. */
  settle(outcome: DeploymentOutcome): void;
}

/** Restarts every target; resolves with their outcomes in the order they settled. */
export async function restartEach(
  targets: readonly PlannedRestart[],
  options: RestartEachOptions,
): Promise<DeploymentOutcome[]> {
  const settled: DeploymentOutcome[] = [];
  await pooledMap(targets, options.concurrency, (target, i) => {
    const fields = {
      namespace: target.namespace,
      deployment: target.name,
      containers: target.containers,
    };
    return restartOne({
      target,
      position: options.firstPosition + i,
      fields,
      options,
      settle(outcome) {
        logOutcome(options.log, outcome, fields);
        settled.push(outcome);
      },
    });
  });
  return settled;
}

/** One target: claim, patch, settle, then record the Kubernetes Event. */
async function restartOne(one: Target): Promise<void> {
  const { target, fields, options } = one;
  const { message, log } = options;
  const name = `${target.namespace}/${target.name}`;
  const at = { namespace: target.namespace, name: target.name, position: one.position };
  if (target.pullPolicyWarnings.length > 0) {
    log.warn("imagePullPolicy is not Always: nodes that cached the tag may keep the old image", {
      ...fields,
      containers: target.pullPolicyWarnings,
    });
  }
  if (options.dryRun) return one.settle({ ...at, result: "dry_run" });
  // Already carrying this restart (or a later one): no claim and no window, only a re-read.
  if (!carriesRestart(target.restartedAtMs, options.restartAt.getTime(), Date.now())) {
    // "duplicate": this event claimed it before (a replica died after the patch); the patch is
    // idempotent, so it goes ahead and finds the restart already made.
    const claim = await options.coordinator.claim(message.id, name, message.image);
    if (claim === "recent") {
      if (await followRecent(one, name) === "settled") return;
      // The window's restart failed (and released it) or lapsed: nothing to follow, so restart.
      return await restartClaimed(one, name, false);
    }
    return await restartClaimed(one, name, claim === "claimed");
  }
  await restartClaimed(one, name, false);
}

/** Patches a target this event may restart, settles it, records the restart for the window. */
async function restartClaimed(one: Target, name: string, holdsWindow: boolean): Promise<void> {
  const { target, options } = one;
  const { message } = options;
  const at = { namespace: target.namespace, name: target.name, position: one.position };
  // Before the first attempt: no attempt of this restart can have taken effect earlier.
  const sentAt = Date.now();
  const outcome = await restartDeployment(target, {
    api: options.api,
    event: message,
    policy: options.policy,
    restartAt: options.restartAt,
    onObject: (d) => options.inventory.upsert(d),
  });
  if (outcome.status === "restarted") {
    if (holdsWindow) await recordMade(one, name, outcome.deployment, sentAt);
    one.settle({ ...at, result: "restarted", deployment: outcome.deployment });
    // The audit Event was recorded by whoever made the restart.
    if (!outcome.already) await recordEvent(one, outcome.deployment);
    return;
  }
  // Nothing restarted must not hold the burst window against a later event: it restarts.
  if (holdsWindow) await options.coordinator.release(message.id, name, message.image);
  if (outcome.status === "skipped") {
    one.settle({ ...at, result: "skipped", reason: outcome.reason });
  } else {
    one.settle({ ...at, result: "failed", error: outcome.error, httpStatus: outcome.httpStatus });
  }
}

/** Records the restart in the window for a later event to follow, or gives the window up. */
async function recordMade(
  one: Target,
  name: string,
  restarted: Deployment,
  sentAt: number,
): Promise<void> {
  const { message, coordinator } = one.options;
  const generation = restarted.metadata.generation;
  if (typeof generation !== "number") {
    return await coordinator.release(message.id, name, message.image);
  }
  await coordinator.restartMade(name, message.image, {
    eventId: message.id,
    generation,
    restartedAt: one.options.restartAt.getTime(),
    patchedAt: sentAt,
  });
}

/**
 * Settles a target whose window another event's restart holds: once that
 * patch has answered (the window records it), and the Deployment as the API
 * answers it now shows that restart (worker/followed_restart.ts), it is
 * reported restarted, with whose restart it is, and followed like this
 * event's own. "gone": the window lapsed, its restart failed, it cannot be
 * followed, or it did not show within the wait (its holder died, or someone
 * wrote the window); the caller restarts it.
 */
async function followRecent(one: Target, name: string): Promise<"settled" | "gone"> {
  const { target, options } = one;
  const at = { namespace: target.namespace, name: target.name, position: one.position };
  const deadline = Date.now() + (options.followWaitMs ?? 10_000);
  for (;;) {
    const recent = await options.coordinator.recentRestart(name, options.message.image)
      .catch(() => undefined);
    if (recent?.kind === "gone") return "gone";
    if (recent?.kind === "made") {
      let current: Deployment;
      try {
        current = await options.api.getDeployment(target.namespace, target.name);
      } catch {
        return "gone"; // the restart path reads it again, and says what failed
      }
      options.inventory.upsert(current);
      // Refused to this event now (its annotation or labels changed): skipped, never restarted.
      const refused = refusalOf(planFresh(options.message, current, options.policy));
      if (refused) {
        one.settle({ ...at, result: "skipped", reason: refused });
        return "settled";
      }
      const why = cannotFollow(recent, current, options.message, options.policy);
      if (why !== undefined) {
        options.log.info("not following the restart within the window; restarting", {
          ...one.fields,
          followed_event: recent.eventId,
          reason: why,
        });
        return "gone";
      }
      const reason =
        `restarted by event ${recent.eventId} within RESTART_DEDUP_WINDOW; following that rollout`;
      one.settle({ ...at, result: "restarted", deployment: current, reason });
      return "settled";
    }
    // A missed restart is worse than a doubled one: a restart that never shows is not waited out.
    if (Date.now() >= deadline) return "gone";
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The one log line of a settled outcome. */
function logOutcome(log: Logger, outcome: DeploymentOutcome, fields: Target["fields"]): void {
  switch (outcome.result) {
    case "dry_run":
      return log.info("dry run: would restart deployment", fields);
    case "restarted":
      return log.info("restarted deployment", fields);
    case "skipped":
      return log.info("skipped deployment", { ...fields, reason: outcome.reason });
    case "failed": {
      const hint = outcome.httpStatus === 403
        ? "the worker's ServiceAccount may not patch this Deployment: check the RoleBinding and the admission policy"
        : undefined;
      return log.error("restart failed", {
        ...fields,
        error: outcome.error,
        status: outcome.httpStatus,
        hint,
      });
    }
  }
}

/** The audit trail in the cluster; failing it never fails the restart. */
async function recordEvent(one: Target, restarted: Deployment): Promise<void> {
  const { options } = one;
  try {
    const now = options.now?.() ?? new Date();
    await options.api.createEvent(
      restarted.metadata.namespace,
      rolloutTriggeredEvent(restarted, options.message, options.clusterName, now),
    );
    options.metrics.kubeEvents.inc({ result: "created" });
  } catch (err) {
    options.metrics.kubeEvents.inc({ result: "failed" });
    options.log.warn("could not record the Kubernetes Event for the restart", {
      ...one.fields,
      error: describeError(err),
      hint: "the worker's Role needs create on events (core group) in this namespace",
    });
  }
}
