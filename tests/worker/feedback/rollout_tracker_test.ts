/**
 * The rollout tracker in process with a fake clock: it reads each restarted
 * Deployment's rollout from the objects it is handed (as the inventory's watch
 * delivers them), reports changes, and ends every rollout in a final state.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { fakeClock } from "../../helpers/fake_clock.ts";
import type { DeploymentReport, RolloutReport } from "../../../shared/event_status.ts";
import type { Deployment } from "../../../worker/kube/objects.ts";
import {
  changedRollout,
  createRolloutTracker,
  timedOutRollout,
  type TrackedEvent,
} from "../../../worker/feedback/rollout_tracker.ts";
import { snapshotOf } from "../../../worker/feedback/rollout_snapshots.ts";

function deployment(
  name: string,
  generation: number,
  status: NonNullable<Deployment["status"]>,
  uid = `uid-${name}`,
): Deployment {
  return {
    metadata: { name, namespace: "ns", generation, uid },
    spec: { replicas: 2 },
    status,
  };
}

const progressing = {
  observedGeneration: 2,
  replicas: 3,
  updatedReplicas: 1,
  readyReplicas: 2,
  availableReplicas: 2,
};
const complete = {
  observedGeneration: 2,
  replicas: 2,
  updatedReplicas: 2,
  readyReplicas: 2,
  availableReplicas: 2,
};

function setup() {
  const clock = fakeClock(1_000);
  const changes: [string, boolean][] = [];
  const finals: string[] = [];
  const tracker = createRolloutTracker({
    clock,
    timeoutText: "10s",
    onChange: (id, final) => changes.push([id, final]),
    onFinal: (id, d) => finals.push(`${id} ${d.name} ${d.rollout?.state}`),
  });
  const event = (names: string[], deadline = 11_000): TrackedEvent => ({
    eventId: "e1",
    matched: names.length,
    deployments: names.map((name): DeploymentReport => ({
      namespace: "ns",
      name,
      result: "restarted",
    })),
    deadline,
    targets: names.map((name) => ({ namespace: "ns", name, generation: 2, uid: `uid-${name}` })),
  });
  const states = () => tracker.get("e1")?.deployments.map((d) => `${d.name}: ${d.rollout?.state}`);
  return { clock, changes, finals, tracker, event, states };
}

Deno.test("the tracker follows a rollout from the watch's objects to complete, and then forgets the event", () => {
  const { changes, finals, tracker, event, states } = setup();
  tracker.observe("MODIFIED", deployment("api", 2, { observedGeneration: 1 }));
  tracker.track(event(["api"]));
  assertEquals(states(), ["api: progressing"]);
  tracker.observe("MODIFIED", deployment("api", 2, progressing));
  assertEquals(tracker.get("e1")?.deployments[0].rollout, {
    state: "progressing",
    replicas: 2,
    updated: 1,
    ready: 2,
    available: 2,
  });
  // The same status again is no change.
  const before = changes.length;
  tracker.observe("MODIFIED", deployment("api", 2, progressing));
  assertEquals(changes.length, before);
  tracker.observe("MODIFIED", deployment("api", 2, complete));
  assertEquals(changes.at(-1), ["e1", true]);
  assertEquals(finals, ["e1 api complete"]);
  assertEquals(tracker.size(), 0);
});

Deno.test("the tracker fails a rollout on ProgressDeadlineExceeded and on deletion, and times out the rest at the deadline", async () => {
  const { clock, changes, finals, tracker, event, states } = setup();
  for (const name of ["a", "b", "c"]) {
    tracker.observe("ADDED", deployment(name, 2, { observedGeneration: 1 }));
  }
  tracker.track(event(["a", "b", "c"]));
  tracker.observe(
    "MODIFIED",
    deployment("a", 2, {
      ...progressing,
      conditions: [{ type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded" }],
    }),
  );
  tracker.observe("DELETED", deployment("b", 2, progressing));
  assertEquals(states(), ["a: failed", "b: failed", "c: progressing"]);
  assertEquals(tracker.get("e1")?.deployments[1].rollout?.reason, "the Deployment was deleted");
  await clock.advance(9_999);
  assertEquals(states(), ["a: failed", "b: failed", "c: progressing"]);
  await clock.advance(1);
  assertEquals(changes.at(-1), ["e1", true]);
  assertEquals(finals, ["e1 a failed", "e1 b failed", "e1 c timed_out"]);
  assertEquals(tracker.size(), 0);
});

Deno.test("the tracker starts from what it already knows (resume): a rollout complete meanwhile is final at once; a recreated Deployment fails", () => {
  const { changes, finals, tracker, event } = setup();
  tracker.observe("ADDED", deployment("done", 2, complete));
  tracker.observe("ADDED", deployment("new", 1, {}, "another-uid"));
  tracker.track(event(["done", "new"]));
  assertEquals(finals, ["e1 done complete", "e1 new failed"]);
  assertEquals(changes, [["e1", true]]);
});

Deno.test("the tracker times out at once an event resumed after its deadline", async () => {
  const { clock, finals, tracker, event } = setup();
  tracker.observe("ADDED", deployment("late", 2, progressing));
  tracker.track(event(["late"], 500));
  await clock.advance(0);
  assertEquals(finals, ["e1 late timed_out"]);
});

Deno.test("the tracker ignores an older status handed over after a newer one (a patch answer behind the watch)", () => {
  const { finals, tracker, event } = setup();
  // The watch already showed the controller done with generation 2 ...
  tracker.observe("MODIFIED", deployment("fast", 2, complete));
  // ... before the patch's own answer (observedGeneration 1) was handled.
  tracker.observe("MODIFIED", deployment("fast", 2, { observedGeneration: 1 }));
  tracker.track(event(["fast"]));
  assertEquals(finals, ["e1 fast complete"]);
});

Deno.test("changedRollout() is the followed rollout's next report, or undefined when nothing changed", async (t) => {
  const target = { namespace: "ns", name: "api", generation: 2, uid: "uid-api" };
  const moving: RolloutReport = {
    state: "progressing",
    replicas: 2,
    updated: 1,
    ready: 2,
    available: 2,
  };
  const cases: [string, RolloutReport | undefined, Deployment | undefined, unknown][] = [
    ["not followed (no rollout)", undefined, deployment("api", 2, complete), undefined],
    ["final already", { ...moving, state: "failed" }, deployment("api", 2, complete), undefined],
    ["the same status again", moving, deployment("api", 2, progressing), undefined],
    ["complete", moving, deployment("api", 2, complete), {
      state: "complete",
      replicas: 2,
      updated: 2,
      ready: 2,
      available: 2,
    }],
    ["deleted", moving, undefined, {
      ...moving,
      state: "failed",
      reason: "the Deployment was deleted",
    }],
    ["recreated (another uid)", moving, deployment("api", 2, complete, "uid-new"), {
      ...moving,
      state: "failed",
      reason: "the Deployment was deleted and recreated",
    }],
  ];
  for (const [name, current, d, expected] of cases) {
    await t.step(name, () => {
      assertEquals(changedRollout(current, d && snapshotOf(d), target), expected);
    });
  }
});

Deno.test("timedOutRollout() times out only a rollout still progressing or baking", async (t) => {
  const at = { replicas: 3, updated: 1, ready: 2, available: 2 };
  const cases: [string, RolloutReport | undefined, RolloutReport | undefined][] = [
    ["progressing", { state: "progressing", ...at }, {
      state: "timed_out",
      ...at,
      reason: "not complete within ROLLOUT_TIMEOUT (10m)",
    }],
    ["baking (how long unknown)", { state: "baking", ...at }, {
      state: "timed_out",
      ...at,
      reason: "not complete within ROLLOUT_TIMEOUT (10m): still baking",
    }],
    ["complete", { state: "complete", ...at }, undefined],
    ["failed", { state: "failed", ...at, reason: "ProgressDeadlineExceeded" }, undefined],
    ["not followed (no rollout)", undefined, undefined],
  ];
  for (const [name, current, expected] of cases) {
    await t.step(name, () => assertEquals(timedOutRollout(current, "10m"), expected));
  }
});

Deno.test("timedOutRollout() says how long of its bake time a baking rollout stayed healthy", () => {
  const at = { replicas: 3, updated: 3, ready: 3, available: 3 };
  assertEquals(
    timedOutRollout({ state: "baking", ...at }, "10m", { healthyMs: 95_400, bakeMs: 120_000 }),
    {
      state: "timed_out",
      ...at,
      reason:
        "not complete within ROLLOUT_TIMEOUT (10m): still baking, healthy for 95s of its 2m bake time",
    },
  );
});
