/**
 * The pure end of handling one event: every matched Deployment has exactly one
 * outcome, and this folds them into all the worker says about the event — the
 * summary (its log line and the handler's answer), the restart counts for
 * metrics, and the report handed to the rollout feedback. No I/O, so the fold
 * is tested as tables. Outcomes are the worker's own values, not input.
 */

import type { DeploymentReport, RestartResult } from "../shared/event_status.ts";
import type { Deployment } from "./kube/objects.ts";
import type { PlannedSkip } from "./plan.ts";
import { restartFailureReason } from "./feedback/report.ts";

/** What became of one Deployment the event named: one value per Deployment. */
export type DeploymentOutcome =
  & {
    namespace: string;
    name: string;
    /** Its place in the plan, skips first and then restarts: the report's order. */
    position: number;
  }
  & (
    /** `reason`: the restart was another event's, within the dedup window (followed). */
    | { result: "restarted"; deployment: Deployment; reason?: string }
    | { result: "dry_run" }
    | { result: "skipped"; reason: string }
    | { result: "failed"; error: string; httpStatus: number }
  );

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

/** What summarizeEvent folds. */
export interface SummaryInput {
  event: { id: string; image: string; tags: string[] };
  matched: number;
  /** In the order they settled: the plan's skips, then each restart as it finished. */
  outcomes: readonly DeploymentOutcome[];
  durationMs: number;
}

/** Everything the worker says about one handled event. */
export interface EventFold {
  summary: EventSummary;
  /** The summary line's level: error when any restart failed. */
  level: "info" | "error";
  /** Increments of restarts_total per result. */
  restarts: Record<RestartResult, number>;
  /** One entry per Deployment, in plan order. */
  report: DeploymentReport[];
  /** The restarted Deployments as the patch answered them, in the order they settled. */
  restarted: Deployment[];
}

/** The outcomes of the plan's skips: settled before any restart starts. */
export function skipOutcomes(skipped: readonly PlannedSkip[]): DeploymentOutcome[] {
  return skipped.map((s, position) => ({
    namespace: s.namespace,
    name: s.name,
    position,
    result: "skipped",
    reason: s.reason,
  }));
}

function reportEntry(o: DeploymentOutcome): DeploymentReport {
  const entry: DeploymentReport = { namespace: o.namespace, name: o.name, result: o.result };
  if (o.result === "skipped" || (o.result === "restarted" && o.reason)) entry.reason = o.reason;
  else if (o.result === "failed") entry.reason = restartFailureReason(o.error);
  return entry;
}

/** Folds one event's outcomes into its summary, restart counts and report. */
export function summarizeEvent(input: SummaryInput): EventFold {
  const summary: EventSummary = {
    event_id: input.event.id,
    image: input.event.image,
    tags: input.event.tags,
    matched: input.matched,
    restarted: [],
    skipped: [],
    failed: [],
    duration_ms: input.durationMs,
  };
  const restarts: Record<RestartResult, number> = {
    restarted: 0,
    skipped: 0,
    failed: 0,
    dry_run: 0,
  };
  const restarted: Deployment[] = [];
  for (const o of input.outcomes) {
    const deployment = `${o.namespace}/${o.name}`;
    restarts[o.result]++;
    if (o.result === "restarted") {
      summary.restarted.push(deployment);
      restarted.push(o.deployment);
    } else if (o.result === "dry_run") summary.skipped.push({ deployment, reason: "dry_run" });
    else if (o.result === "skipped") summary.skipped.push({ deployment, reason: o.reason });
    else summary.failed.push({ deployment, error: o.error });
  }
  const report = [...input.outcomes].sort((a, b) => a.position - b.position).map(reportEntry);
  const level = summary.failed.length > 0 ? "error" : "info";
  return { summary, level, restarts, report, restarted };
}
