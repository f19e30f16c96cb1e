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

function setup(rolloutTimeoutMs: number, persisted: TrackedEvent[] = [], rolloutBakeTimeMs = 0) {
  const clock = fakeClock(0);
  const logs: Record<string, unknown>[] = [];
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
    rolloutBakeTimeMs,
    reports: store,
    tracking,
    logger: createLogger({ level: "warn", write: (line) => logs.push(JSON.parse(line)) }),
    metrics,
    clock,
  });
  return { clock, reports, saved, removed, feedback, metrics, logs };
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

Deno.test("feedback with ROLLOUT_BAKE_TIME reports a complete-looking rollout baking (in progress), then succeeded once the bake time passed, by the clock alone", async () => {
  const t = setup(600_000, [], 30_000);
  t.feedback.begin({
    eventId: "e",
    matched: 1,
    deployments: [{ namespace: "ns", name: "api", result: "restarted" }],
    restarted: [patched(2, { observedGeneration: 1 })],
  });
  t.feedback.observe("MODIFIED", patched(2, done));
  await t.clock.advance(1000);
  const baking = t.reports.at(-1)!;
  assertEquals([baking.state, baking.deployments[0].rollout?.state], ["in_progress", "baking"]);
  assertEquals([baking.counts.progressing, baking.counts.complete], [1, 0]);
  await t.clock.advance(28_000);
  assertEquals(t.reports.at(-1)!.state, "in_progress");
  await t.clock.advance(2_000);
  const final = t.reports.at(-1)!;
  assertEquals([final.state, final.deployments[0].rollout?.state], ["succeeded", "complete"]);
  assertEquals(t.removed, ["e"]);
  assertEquals(t.logs, []);
});

Deno.test("feedback warns at start when ROLLOUT_BAKE_TIME is not shorter than ROLLOUT_TIMEOUT", () => {
  assertEquals(setup(60_000, [], 60_000).logs.map((l) => [l.level, l.msg, l.rollout_timeout]), [[
    "warn",
    "ROLLOUT_BAKE_TIME is not shorter than ROLLOUT_TIMEOUT: every rollout it applies to ends timed_out while baking",
    "1m",
  ]]);
  assertEquals(setup(0, [], 60_000).logs, [], "no tracking, no bake");
  assertEquals(setup(60_000, [], 59_000).logs, []);
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
