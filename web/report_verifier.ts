/**
 * Web's side of signed cluster reports (shared/report_signature.ts): given
 * each cluster's public keys (REPORT_VERIFY_KEYS), a report field counts only
 * when the cluster it names signed it for this event with one of its own
 * keys. Anything else is ignored as if it were not there, with the reason,
 * so the cluster stays pending and then no_report: Valkey write access can
 * delay an answer, not make it green.
 */

import type { ClusterKeySources } from "../shared/event_keys.ts";
import { importVerifyKeys, type VerifyKeys } from "../shared/event_signature.ts";
import { openReport, reportBytes } from "../shared/report_signature.ts";

/**
 * Why a report field is ignored: not signed, by a cluster without keys, with
 * a key that is not its cluster's, a signature that does not verify, or a
 * field of a cluster the event does not wait for (status_store.ts decides that one).
 */
export type ReportRejection =
  | "unsigned"
  | "unknown_cluster"
  | "unknown_key"
  | "bad_signature"
  | "not_waited_for";

/** Every rejection reason, each counted from start-up. */
export const REPORT_REJECTIONS: readonly ReportRejection[] = [
  "unsigned",
  "unknown_cluster",
  "unknown_key",
  "bad_signature",
  "not_waited_for",
];

/** Checks report fields against the clusters' keys. */
export interface ReportVerifier {
  /** The clusters with keys, sorted as a binding stores them: those every event waits for. */
  clusters: readonly string[];
  /** Key ids by cluster, for the start-up log line. */
  keyIds: Record<string, string[]>;
  /**
   * The report JSON inside a field of cluster `cluster`, when that cluster
   * signed it for `eventId`; else why not. Throws ERR_STATUS_CORRUPT for a
   * malformed envelope. The caller still checks the report names `cluster`.
   */
  check(
    eventId: string,
    cluster: string,
    raw: string,
  ): Promise<{ report: string } | { rejected: Exclude<ReportRejection, "not_waited_for"> }>;
}

/** Imports REPORT_VERIFY_KEYS; throws one ERR_CONFIG line that never quotes a key. */
export async function createReportVerifier(sources: ClusterKeySources): Promise<ReportVerifier> {
  const byCluster = new Map<string, VerifyKeys>();
  for (const [cluster, keys] of sources) {
    byCluster.set(
      cluster,
      await importVerifyKeys(keys, `REPORT_VERIFY_KEYS (--report-verify-keys) of ${cluster}`),
    );
  }
  const clusters = [...byCluster.keys()].sort();
  return {
    clusters,
    keyIds: Object.fromEntries(clusters.map((c) => [c, byCluster.get(c)!.ids])),
    async check(eventId, cluster, raw) {
      const opened = openReport(raw);
      if (!opened.signed) return { rejected: "unsigned" };
      const keys = byCluster.get(cluster);
      if (!keys) return { rejected: "unknown_cluster" };
      if (!keys.has(opened.kid)) return { rejected: "unknown_key" };
      const ok = await keys.verify(opened.kid, opened.sig, reportBytes(eventId, opened.report));
      return ok ? { report: opened.report } : { rejected: "bad_signature" };
    },
  };
}
