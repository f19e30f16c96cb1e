/**
 * Where a restarted Deployment's rollout stands, read from the Deployment the
 * watch delivers, as `kubectl rollout status` decides it: nothing counts until
 * the controller has observed the restarted generation; then a
 * ProgressDeadlineExceeded condition is a failure, and the rollout is complete
 * once every replica is updated and available and no old one is left. Pure;
 * the object is untrusted, so every field is checked before it is used.
 */

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
