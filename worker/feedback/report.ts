/**
 * Builds one cluster's report of an event (SPEC §12) from what the worker did
 * to each Deployment and where each restarted one's rollout stands. Pure. The
 * report is bounded as shared/event_status.ts reads it back: at most
 * MAX_REPORTED_DEPLOYMENTS named, failures first, every text one short line;
 * `counts` covers every Deployment, named or not.
 */

import {
  type ClusterReport,
  type ClusterState,
  clusterStateOf,
  type DeploymentReport,
  emptyCounts,
  MAX_REPORTED_DEPLOYMENTS,
  type ReportCounts,
} from "../../shared/event_status.ts";

/** Longest reason a report carries (the reader accepts 300 characters). */
export const MAX_REASON_CHARS = 200;

/** One line, no control characters, at most MAX_REASON_CHARS. */
export function shortReason(text: string): string {
  const line = text.replace(/\p{Cc}+/gu, " ").replace(/\s+/g, " ").trim();
  return line.length <= MAX_REASON_CHARS ? line : `${line.slice(0, MAX_REASON_CHARS - 1)}…`;
}

/**
 * The reason of a failed restart as the workflow reads it: the API's status and
 * message ("403 Forbidden: deployments.apps …") without the request line.
 */
export function restartFailureReason(error: string): string {
  return shortReason(error.replace(/^[A-Z]+ \/\S*: /, ""));
}

const isFailure = (d: DeploymentReport) =>
  d.result === "failed" || d.rollout?.state === "failed" || d.rollout?.state === "timed_out";

/** Totals over every Deployment. */
export function countDeployments(deployments: readonly DeploymentReport[]): ReportCounts {
  const counts = emptyCounts();
  for (const d of deployments) {
    counts[d.result]++;
    const state = d.rollout?.state;
    if (state === "complete") counts.complete++;
    else if (state === "progressing" || state === "baking") counts.progressing++;
    else if (state === "failed" || state === "timed_out" || state === "unknown") {
      counts.rollout_failed++;
    }
  }
  return counts;
}

/** Inputs of buildReport. */
export interface ReportInput {
  cluster: string;
  /** Deployments that use the event's image (the plan's `matched`). */
  matched: number;
  /** Every Deployment the event touched or skipped, in the plan's order. */
  deployments: readonly DeploymentReport[];
  now: Date;
  /** A problem beyond the Deployments (e.g. a namespace that could not be listed): failed once settled. */
  reason?: string;
  /** The event was too old to restart anything when the cluster took it up. */
  expired?: boolean;
}

/** The cluster's state: expired, failed for a problem once nothing is in progress, else by counts. */
export function reportState(
  counts: ReportCounts,
  input: Pick<ReportInput, "reason" | "expired" | "matched">,
): ClusterState {
  if (input.expired) return "expired";
  const state = clusterStateOf(counts, input.matched);
  return input.reason !== undefined && state !== "in_progress" ? "failed" : state;
}

/** The report to write, bounded. */
export function buildReport(input: ReportInput): ClusterReport {
  const counts = countDeployments(input.deployments);
  const failures = input.deployments.filter(isFailure);
  const others = input.deployments.filter((d) => !isFailure(d));
  const named = [...failures, ...others].slice(0, MAX_REPORTED_DEPLOYMENTS).map((d) => {
    const out: DeploymentReport = { namespace: d.namespace, name: d.name, result: d.result };
    if (d.reason !== undefined) out.reason = shortReason(d.reason);
    if (d.rollout) {
      out.rollout = { ...d.rollout };
      if (d.rollout.reason !== undefined) out.rollout.reason = shortReason(d.rollout.reason);
    }
    return out;
  });
  return {
    cluster: input.cluster,
    state: reportState(counts, input),
    matched: input.matched,
    counts,
    deployments: named,
    omitted: input.deployments.length - named.length,
    updated: input.now.toISOString(),
    ...(input.reason === undefined ? {} : { reason: shortReason(input.reason) }),
  };
}
