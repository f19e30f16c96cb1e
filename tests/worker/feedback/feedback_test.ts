/**
 * The worker's feedback in process, with a fake clock and in-memory stores:
 * what it writes and persists with tracking on and off, and resuming an
 * event from persisted state and the inventory's current objects.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { fakeClock, settle } from "../../helpers/fake_clock.ts";
import type { ClusterReport } from "../../../shared/event_status.ts";
import { createLogger } from "../../../lib/log.ts";
import { createRegistry } from "../../../lib/metrics.ts";
import {
  createFeedback,
  type HandledEvent,
  trackedEventOf,
  trackingAfterWrite,
} from "../../../worker/feedback/feedback.ts";
import type { ReportStore, TrackingStore } from "../../../worker/feedback/store.ts";
import type { WriteResult } from "../../../worker/feedback/report_writer.ts";
import type { Deployment } from "../../../worker/kube/objects.ts";
import { createWorkerMetrics } from "../../../worker/metrics.ts";
import type { TrackedEvent } from "../../../worker/feedback/rollout_tracker.ts";

function setup(rolloutTimeoutMs: number, persisted: TrackedEvent[] = []) {
  const clock = fakeClock(0);
  const reports: ClusterReport[] = [];
  const saved: string[] = [];
  const removed: string[] = [];
  const store: ReportStore = {
    write: (_id, report) => {
      reports.push(structuredClone(report));
      return Promise.resolve("written");
    },
  };
  const tracking: TrackingStore = {
    save: (e) => {
      saved.push(e.eventId);
      return Promise.resolve();
    },
    remove: (id) => {
      removed.push(id);
      return Promise.resolve();
    },
    load: () => Promise.resolve({ events: structuredClone(persisted), dropped: 0 }),
  };
  const metrics = createWorkerMetrics(createRegistry());
  const feedback = createFeedback({
    clusterName: "prod",
    rolloutTimeoutMs,
    reports: store,
    tracking,
    logger: createLogger({ level: "error", write: () => {} }),
    metrics,
    clock,
  });
  return { clock, reports, saved, removed, feedback, metrics };
}

const patched = (generation: number, status: Deployment["status"] = {}): Deployment => ({
  metadata: { namespace: "ns", name: "api", generation, uid: "u1" },
  spec: { replicas: 1 },
  status,
});
const done = {
  observedGeneration: 2,
  replicas: 1,
  updatedReplicas: 1,
  readyReplicas: 1,
  availableReplicas: 1,
};

Deno.test("feedback with ROLLOUT_TIMEOUT 0s writes one final report without rollouts and persists nothing", async () => {
  const t = setup(0);
  t.feedback.begin({
    eventId: "e",
    matched: 1,
    deployments: [{ namespace: "ns", name: "api", result: "restarted" }],
    restarted: [patched(2, { observedGeneration: 1 })],
  });
  await t.clock.advance(1000);
  assertEquals(t.reports.map((r) => [r.state, r.deployments[0].rollout]), [[
    "succeeded",
    undefined,
  ]]);
  assertEquals([t.saved, t.removed], [[], []]);
  assertEquals(t.feedback.stats(), { tracked: 0, pendingWrites: 0 });
});

Deno.test("feedback follows a restart to complete: in_progress first, persisted, then succeeded and the state removed", async () => {
  const t = setup(60_000);
  t.feedback.begin({
    eventId: "e",
    matched: 1,
    deployments: [{ namespace: "ns", name: "api", result: "restarted" }],
    restarted: [patched(2, { observedGeneration: 1 })],
  });
  await settle();
  assertEquals(t.reports.map((r) => r.state), ["in_progress"]);
  assertEquals(t.saved, ["e"]);
  t.feedback.observe("MODIFIED", patched(2, done));
  await t.clock.advance(1000);
  assertEquals(t.reports.map((r) => r.state), ["in_progress", "succeeded"]);
  assertEquals(t.reports[1].deployments[0].rollout?.state, "complete");
  assertEquals(t.removed, ["e"]);
  assertEquals(t.metrics.rollouts.get({ state: "complete" }), 1);
});

Deno.test("feedback resumes a persisted event from the inventory's current objects", async () => {
  const event: TrackedEvent = {
    eventId: "e",
    matched: 1,
    deadline: 50_000,
    deployments: [{ namespace: "ns", name: "api", result: "restarted" }],
    targets: [{ namespace: "ns", name: "api", generation: 2, uid: "u1" }],
  };
  const t = setup(60_000, [event]);
  // The inventory's list showed the rollout finished while no worker was running.
  t.feedback.observe("ADDED", patched(2, done));
  await t.feedback.resume();
  await t.clock.advance(1000);
  assertEquals(t.reports.map((r) => r.state), ["succeeded"]);
  assertEquals(t.removed, ["e"]);
});

Deno.test("trackedEventOf() follows each restarted Deployment at the patch's generation, none with ROLLOUT_TIMEOUT 0s", async (t) => {
  const handled: HandledEvent = {
    eventId: "e",
    matched: 2,
    deployments: [
      { namespace: "ns", name: "api", result: "restarted" },
      { namespace: "ns", name: "web", result: "restarted" },
    ],
    restarted: [patched(2), { metadata: { namespace: "ns", name: "web" } }],
  };
  const followed = {
    eventId: "e",
    matched: 2,
    deployments: handled.deployments,
    deadline: 61_000,
    targets: [
      { namespace: "ns", name: "api", generation: 2, uid: "u1" },
      { namespace: "ns", name: "web", generation: 0, uid: undefined },
    ],
  };
  const cases: [string, HandledEvent, number, unknown][] = [
    [
      "tracking: every restarted one, generation 0 when the answer has none",
      handled,
      60_000,
      followed,
    ],
    ["ROLLOUT_TIMEOUT 0s: none", handled, 0, { ...followed, deadline: 1000, targets: [] }],
    ["nothing restarted: none", { ...handled, restarted: [] }, 60_000, {
      ...followed,
      targets: [],
    }],
  ];
  for (const [name, input, timeoutMs, expected] of cases) {
    await t.step(name, () => assertEquals(trackedEventOf(input, 1000, timeoutMs), expected));
  }
  await t.step("the report's Deployments are a copy", () => {
    const event = trackedEventOf(handled, 1000, 60_000);
    event.deployments[0].result = "failed";
    assertEquals(handled.deployments[0].result, "restarted");
  });
});

Deno.test("trackingAfterWrite() saves a followed event's state while it changes and removes it with the final report", async (t) => {
  const followed = { targets: [{}] };
  const cases: [string, WriteResult, boolean, boolean, "save" | "remove" | undefined][] = [
    ["written, not final: save", "written", false, true, "save"],
    ["written, final: remove", "written", true, true, "remove"],
    ["no record: nothing", "no_record", false, true, undefined],
    ["tracking off: nothing", "written", false, false, undefined],
  ];
  for (const [name, result, final, tracking, expected] of cases) {
    await t.step(name, () => {
      assertEquals(trackingAfterWrite(result, { final, event: followed }, tracking), expected);
    });
  }
  await t.step("no rollout followed: nothing", () => {
    assertEquals(
      trackingAfterWrite("written", { final: true, event: { targets: [] } }, true),
      undefined,
    );
  });
});
