/**
 * How web folds an event's record (its binding and each cluster's report) into
 * the one answer `GET /event/<id>` gives, and when that answer can next change
 * by time alone. Pure: the caller reads the record and gives the time.
 */

import type {
  ClusterReport,
  ClusterStatus,
  EventStatus,
  OverallState,
  StatusBinding,
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
 * Folds the binding and the cluster reports into the answer. Final once every
 * cluster is final: failed if any cluster failed, expired the event or never
 * reported, no_match if every cluster matched nothing, else succeeded. A
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
      state: report.state,
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
  let state: OverallState;
  if (states.length === 0) state = overdue ? "failed" : "pending";
  else if (states.some((s) => s === "pending" || s === "in_progress")) {
    state = states.every((s) => s === "pending") ? "pending" : "in_progress";
  } else if (states.some((s) => s === "failed" || s === "expired" || s === "no_report")) {
    state = "failed";
  } else if (states.every((s) => s === "no_match")) state = "no_match";
  else state = "succeeded";
  const status: EventStatus = {
    id: inputs.id,
    state,
    final: state === "succeeded" || state === "failed" || state === "no_match",
    image: inputs.binding.image,
    tags: inputs.binding.tags,
    time: inputs.binding.time,
    clusters,
  };
  if (states.length === 0 && overdue) status.reason = "no cluster was live or reported";
  return status;
}

/** When the answer can next change without a report arriving (a pending cluster turning no_report). */
export function nextTimedChange(status: EventStatus, reportTimeoutMs: number): number | undefined {
  if (status.final) return undefined;
  const pending = status.clusters.length === 0 ||
    status.clusters.some((c) => c.state === "pending");
  return pending ? Date.parse(status.time) + reportTimeoutMs : undefined;
}
