/**
 * Building a cluster report: bounded to what web reads back (names, failures
 * first, short one-line reasons), counts over every Deployment, and the
 * cluster state from them. Every report round-trips through web's parser.
 */

import { assertEquals } from "../../helpers/assert.ts";
import {
  type DeploymentReport,
  MAX_REPORTED_DEPLOYMENTS,
  parseClusterReport,
} from "../../../shared/event_status.ts";
import { buildReport, restartFailureReason } from "../../../worker/feedback/report.ts";

const now = new Date("2026-12-01T10:00:00.000Z");
const restarted = (name: string, state = "complete"): DeploymentReport => ({
  namespace: "ns",
  name,
  result: "restarted",
  rollout: { state: state as "complete", replicas: 1, updated: 1, ready: 1, available: 1 },
});

Deno.test("buildReport() names at most 50 Deployments, failures first, counts all of them, and web reads it back", () => {
  const many = Array.from({ length: 120 }, (_, i) => restarted(`ok-${i}`));
  const failed: DeploymentReport = {
    namespace: "ns",
    name: "denied",
    result: "failed",
    reason: '403 Forbidden: deployments.apps "denied" is forbidden:\nline two ' + "x".repeat(400),
  };
  const report = buildReport({
    cluster: "prod",
    matched: 122,
    deployments: [...many, restarted("stuck", "failed"), failed],
    now,
  });
  assertEquals(report.deployments.length, MAX_REPORTED_DEPLOYMENTS);
  assertEquals(report.deployments.slice(0, 2).map((d) => d.name), ["stuck", "denied"]);
  assertEquals(report.omitted, 122 - MAX_REPORTED_DEPLOYMENTS);
  assertEquals(report.counts, {
    restarted: 121,
    skipped: 0,
    failed: 1,
    dry_run: 0,
    complete: 120,
    progressing: 0,
    rollout_failed: 1,
  });
  assertEquals(report.state, "failed");
  const reason = report.deployments[1].reason!;
  assertEquals([reason.length <= 200, reason.includes("\n")], [true, false]);
  assertEquals(parseClusterReport(JSON.stringify(report)), report);
});

Deno.test("buildReport() gives the cluster's state: in progress, succeeded, skipped, dry_run, no_match, and succeeded without tracking", () => {
  const state = (deployments: DeploymentReport[]) =>
    buildReport({ cluster: "c", matched: deployments.length, deployments, now }).state;
  assertEquals(state([restarted("a"), restarted("b", "progressing")]), "in_progress");
  assertEquals(
    state([restarted("a"), { namespace: "ns", name: "p", result: "skipped", reason: "paused" }]),
    "succeeded",
  );
  assertEquals(
    state([{ namespace: "ns", name: "p", result: "skipped", reason: "paused" }]),
    "skipped",
  );
  assertEquals(state([{ namespace: "ns", name: "p", result: "dry_run" }]), "dry_run");
  assertEquals(state([restarted("a", "baking")]), "in_progress");
  assertEquals(state([]), "no_match");
  // ROLLOUT_TIMEOUT=0s: restarted Deployments carry no rollout.
  assertEquals(state([{ namespace: "ns", name: "a", result: "restarted" }]), "succeeded");
  assertEquals(state([restarted("a", "timed_out")]), "failed");
});

Deno.test("restartFailureReason() keeps the API's status and message, not the request line", () => {
  assertEquals(
    restartFailureReason(
      'PATCH /apis/apps/v1/namespaces/ns/deployments/app?fieldManager=kuberollouttrigger: 403 Forbidden: deployments.apps "app" is forbidden',
    ),
    '403 Forbidden: deployments.apps "app" is forbidden',
  );
});
