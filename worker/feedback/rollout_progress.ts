/**
 * Where a restarted Deployment's rollout stands, read from the Deployment the
 * watch delivers, as `kubectl rollout status` decides it: nothing counts until
 * the controller has observed the restarted generation; then a
 * ProgressDeadlineExceeded condition is a failure, and the rollout is complete
 * once every replica is updated and available and no old one is left. With a
 * bake time, a rollout that looks complete is `baking` until it has stayed
 * healthy that long (bakingRollout()). Pure; the object is untrusted, so every
 * field is checked before it is used.
 */

import { parseDuration } from "../../lib/setting_values.ts";
import type { RolloutReport } from "../../shared/event_status.ts";

/** The parts of a Deployment the reading needs (as the API returns them). */
export interface DeploymentProgress {
  metadata?: { generation?: unknown };
  spec?: { replicas?: unknown; paused?: unknown };
  status?: {
    observedGeneration?: unknown;
    replicas?: unknown;
    updatedReplicas?: unknown;
    readyReplicas?: unknown;
    availableReplicas?: unknown;
    conditions?: unknown;
  };
}

const count = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : 0;

function progressingCondition(conditions: unknown): { status?: unknown; reason?: unknown } {
  if (!Array.isArray(conditions)) return {};
  return conditions.find((c) => c && typeof c === "object" && c.type === "Progressing") ?? {};
}

/**
 * Reads the rollout of `deployment` for a restart that produced `generation`
 * (metadata.generation of the patched object).
 */
export function rolloutProgress(
  deployment: DeploymentProgress,
  generation: number,
): RolloutReport {
  const status = deployment.status ?? {};
  // kubectl: spec.replicas unset means the default of 1.
  const desired = deployment.spec?.replicas === undefined ? 1 : count(deployment.spec.replicas);
  const report: RolloutReport = {
    state: "progressing",
    replicas: desired,
    updated: count(status.updatedReplicas),
    ready: count(status.readyReplicas),
    available: count(status.availableReplicas),
  };
  const observed = count(status.observedGeneration);
  if (observed < generation) return report;
  const condition = progressingCondition(status.conditions);
  if (condition.reason === "ProgressDeadlineExceeded") {
    return { ...report, state: "failed", reason: "ProgressDeadlineExceeded" };
  }
  if (report.updated < desired) return report;
  if (count(status.replicas) > report.updated) return report; // old replicas still terminating
  if (report.available < report.updated) return report;
  return { ...report, state: "complete" };
}

/**
 * The Deployment annotation that sets its bake time, overriding
 * ROLLOUT_BAKE_TIME: a duration as the settings read them ("90s", "2m",
 * "1h30m"); "0s" turns the bake off for that Deployment.
 */
export const BAKE_TIME_ANNOTATION = "kuberollouttrigger/bake-time";

/** When a rollout first looked complete, and the Deployment's metadata.generation then. */
export interface Bake {
  since: number;
  generation: number;
}

/**
 * The bake time in ms a Deployment asks for: its annotation's, else
 * `defaultMs` (ROLLOUT_BAKE_TIME). An annotation that is not a duration is a
 * reason (the rollout fails with it): the Deployment asked to be watched for
 * a while, and calling it complete without that would claim a health nobody
 * checked.
 */
export function bakeTimeOf(annotation: unknown, defaultMs: number): number | { reason: string } {
  if (annotation === undefined) return defaultMs;
  const text = typeof annotation === "string" ? annotation : "";
  try {
    return parseDuration(text);
  } catch (err) {
    // Security: the value is untrusted; quoted, and bounded (snapshotOf keeps at most 64 characters).
    return {
      reason: `annotation ${BAKE_TIME_ANNOTATION} ${JSON.stringify(text)} is not a duration: ${
        (err as Error).message
      }`,
    };
  }
}

/**
 * Where a rollout that looked complete stands in its bake, from `read`
 * (rolloutProgress() of `deployment` now): baking until `bakeMs` after
 * `bake.since`, then complete; failed as soon as it breaks: the spec changed
 * (metadata.generation moved: someone else rolled it), the Progressing
 * condition turned False, or available replicas dropped below desired.
 */
export function bakingRollout(options: {
  read: RolloutReport;
  deployment: DeploymentProgress;
  bake: Bake;
  bakeMs: number;
  now: number;
}): RolloutReport {
  const { read, deployment, bake, bakeMs, now } = options;
  const { replicas, updated, ready, available } = read;
  const counts = { replicas, updated, ready, available };
  const failed = (reason: string): RolloutReport => ({ ...counts, state: "failed", reason });
  const generation = count(deployment.metadata?.generation);
  if (generation !== bake.generation) {
    return failed(`generation changed while baking (${bake.generation} to ${generation})`);
  }
  const condition = progressingCondition(deployment.status?.conditions);
  if (condition.status === "False" || condition.reason === "ProgressDeadlineExceeded") {
    const why = typeof condition.reason === "string" && condition.reason !== ""
      ? condition.reason.slice(0, 100)
      : "Progressing condition False";
    return failed(`${why} while baking`);
  }
  if (available < replicas) {
    return failed(`available replicas dropped to ${available} of ${replicas} while baking`);
  }
  return { ...counts, state: now - bake.since >= bakeMs ? "complete" : "baking" };
}
