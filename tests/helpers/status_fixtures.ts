/** An event's binding and cluster reports as web and the workers write them, for status tests. */

import {
  type ClusterReport,
  clusterStateOf,
  emptyCounts,
  type ReportCounts,
  type StatusBinding,
} from "../../shared/event_status.ts";

/** When the fixture event was published. */
export const T0 = Date.parse("2026-12-01T10:00:00Z");
/** Its binding: two clusters, east and west. */
export const BINDING: StatusBinding = {
  repository: "a".repeat(64),
  image: "ghcr.io/acme/app",
  tags: ["dev"],
  time: new Date(T0).toISOString(),
  clusters: ["east", "west"],
};

/** Report counts: zero but for `extra`. */
export function counts(extra: Partial<ReportCounts>): ReportCounts {
  return { ...emptyCounts(), ...extra };
}

/** A cluster's report with the given counts and the state they imply. */
export function report(cluster: string, c: Partial<ReportCounts>): ClusterReport {
  const all = counts(c);
  const matched = all.restarted + all.skipped + all.failed + all.dry_run;
  return {
    cluster,
    state: clusterStateOf(all, matched),
    matched,
    counts: all,
    deployments: [],
    omitted: 0,
    updated: new Date(T0 + 1000).toISOString(),
  };
}
