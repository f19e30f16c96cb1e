/**
 * How web folds an event's record (its binding and each cluster's report) into
 * the one answer `GET /event/<id>` gives, and when that answer can next change
 * by time alone. Pure: the caller reads the record and gives the time.
 */

import {
  type ClusterAnswer,
  type ClusterReport,
  type ClusterState,
  clusterStateOf,
  type ClusterStatus,
  type EventStatus,
  FINAL_OVERALL_STATES,
  type OverallState,
  type StatusBinding,
} from "../shared/event_status.ts";

/** Why a known cluster that was not live at publishing has not reported. */
const AWAY =
  "the cluster was not live when the event was published; it handles the event when it returns within its catch-up window";

/** Inputs of summarizeStatus. */
export interface StatusInputs {
  id: string;
  binding: StatusBinding;
  /** Every report in the record, by cluster name. */
  reports: ReadonlyMap<string, ClusterReport>;
  /** Clusters whose report was there but unreadable: failed, not pending. */
  unreadable?: readonly string[];
  /** Known clusters that were not live when web published. */
  unreachable?: readonly string[];
  now: number;
  /** How long after publishing a live cluster may take to report before it is no_report. */
  reportTimeoutMs: number;
}

/**
 * A report's state, read again from its counts when it claims an outcome
 * without failure: a worker from before dry_run and skipped existed said
 * succeeded for a dry run and no_match for skips. Never turns a report greener.
 */
export function reportedState(report: ClusterReport): ClusterState {
  if (report.state !== "succeeded" && report.state !== "no_match") return report.state;
  return clusterStateOf(report.counts, report.matched);
}

/**
 * The overall state of the clusters' answers: pending or in_progress while any
 * is; then failed if any failed, expired the event or never reported; dry_run
 * if any cluster only pretended (a dry run never counts as succeeded);
 * no_match if none runs the image, skipped if some run it but every match was
 * skipped; else succeeded (some restarted; other clusters' skips are in the
 * table).
 */
export function overallState(states: readonly ClusterAnswer[], overdue: boolean): OverallState {
  if (states.length === 0) return overdue ? "failed" : "pending";
  if (states.some((s) => s === "pending" || s === "in_progress")) {
    return states.every((s) => s === "pending") ? "pending" : "in_progress";
  }
  if (states.some((s) => s === "failed" || s === "expired" || s === "no_report")) return "failed";
  if (states.some((s) => s === "dry_run")) return "dry_run";
  if (states.every((s) => s === "no_match")) return "no_match";
  if (states.every((s) => s === "no_match" || s === "skipped")) return "skipped";
  return "succeeded";
}

/**
 * Folds the binding and the cluster reports into the answer (overallState). A
 * cluster that was not live when web published is pending with that reason
 * until the report timeout, then no_report like a silent one; it may still
 * report later (it catches up when it returns), and the answer follows.
 */
export function summarizeStatus(inputs: StatusInputs): EventStatus {
  const published = Date.parse(inputs.binding.time);
  const overdue = !(inputs.now - published < inputs.reportTimeoutMs);
  const unreadable = new Set(inputs.unreadable ?? []);
  const unreachable = new Set(inputs.unreachable ?? []);
  const names = [
    ...new Set([...inputs.binding.clusters, ...inputs.reports.keys(), ...unreadable]),
  ].sort();
  const clusters: ClusterStatus[] = names.map((cluster) => {
    const report = inputs.reports.get(cluster);
    if (!report) {
      const bare = { cluster, matched: 0, deployments: [], omitted: 0 };
      if (unreadable.has(cluster)) {
        return { ...bare, state: "failed", reason: "the cluster's report is unreadable" };
      }
      const away = unreachable.has(cluster);
      if (!overdue) {
        return away ? { ...bare, state: "pending", reason: AWAY } : { ...bare, state: "pending" };
      }
      const waited = `no report within ${Math.round(inputs.reportTimeoutMs / 1000)}s of publishing`;
      return { ...bare, state: "no_report", reason: away ? `${AWAY}; ${waited}` : waited };
    }
    const answer: ClusterStatus = {
      cluster,
      state: reportedState(report),
      matched: report.matched,
      counts: report.counts,
      deployments: report.deployments,
      omitted: report.omitted,
      updated: report.updated,
    };
    if (report.reason !== undefined) answer.reason = report.reason;
    return answer;
  });
  const states = clusters.map((c) => c.state);
  const state = overallState(states, overdue);
  const status: EventStatus = {
    id: inputs.id,
    state,
    final: FINAL_OVERALL_STATES.includes(state),
    image: inputs.binding.image,
    tags: inputs.binding.tags,
    time: inputs.binding.time,
    clusters,
  };
  if (clusters.length === 0 && overdue) status.reason = "no cluster was live or reported";
  return status;
}

/** When the answer can next change without a report arriving (a pending cluster turning no_report). */
export function nextTimedChange(status: EventStatus, reportTimeoutMs: number): number | undefined {
  if (status.final) return undefined;
  const pending = status.clusters.length === 0 ||
    status.clusters.some((c) => c.state === "pending");
  return pending ? Date.parse(status.time) + reportTimeoutMs : undefined;
}
