/**
 * Bake time in the rollout tracker, in process with a fake clock: a rollout
 * that looks complete is `baking` until it has stayed healthy for the bake
 * time (ROLLOUT_BAKE_TIME, or the Deployment's kuberollouttrigger/bake-time
 * annotation), and turns complete by the clock alone, with no watch event;
 * it fails when it breaks while baking, and is timed_out when the event's
 * deadline comes first.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { fakeClock } from "../../helpers/fake_clock.ts";
import type { DeploymentReport } from "../../../shared/event_status.ts";
import type { Deployment } from "../../../worker/kube/objects.ts";
import {
  createRolloutTracker,
  rolloutStep,
  type TrackedEvent,
  type TrackTarget,
} from "../../../worker/feedback/rollout_tracker.ts";
import { snapshotOf } from "../../../worker/feedback/rollout_snapshots.ts";

const START = 1_000;
const DEADLINE = START + 600_000;

const complete = {
  observedGeneration: 2,
  replicas: 3,
  updatedReplicas: 3,
  readyReplicas: 3,
  availableReplicas: 3,
  conditions: [{ type: "Progressing", status: "True", reason: "NewReplicaSetAvailable" }],
};

/** The Deployment `api` (3 replicas) at `generation`, with `status` and its bake-time annotation. */
function api(
  status: NonNullable<Deployment["status"]> = complete,
  { generation = 2, bakeTime }: { generation?: number; bakeTime?: string } = {},
): Deployment {
  return {
    metadata: {
      name: "api",
      namespace: "ns",
      generation,
      uid: "uid-api",
      ...(bakeTime === undefined
        ? {}
        : { annotations: { "kuberollouttrigger/bake-time": bakeTime } }),
    },
    spec: { replicas: 3 },
    status,
  };
}

function setup(bakeTimeMs: number) {
  const clock = fakeClock(START);
  const changes: boolean[] = [];
  const finals: string[] = [];
  const tracker = createRolloutTracker({
    clock,
    timeoutText: "10m",
    bakeTimeMs,
    onChange: (_id, final) => changes.push(final),
    onFinal: (_id, d) =>
      finals.push(`${d.rollout?.state}${d.rollout?.reason ? `: ${d.rollout.reason}` : ""}`),
  });
  const event = (deadline = DEADLINE, target: Partial<TrackTarget> = {}): TrackedEvent => ({
    eventId: "e1",
    matched: 1,
    deployments: [{ namespace: "ns", name: "api", result: "restarted" } as DeploymentReport],
    deadline,
    targets: [{ namespace: "ns", name: "api", generation: 2, uid: "uid-api", ...target }],
  });
  /** The rollout's state now ("gone" once the event is final and forgotten). */
  const state = () => tracker.get("e1")?.deployments[0].rollout?.state ?? "gone";
  /** Tracks the event while the rollout is still on its way, then shows it complete. */
  const rollOut = (done: Deployment = api(), deadline = DEADLINE) => {
    tracker.observe("ADDED", api({ observedGeneration: 1 }, { bakeTime: annotationOf(done) }));
    tracker.track(event(deadline));
    tracker.observe("MODIFIED", done);
  };
  return { clock, changes, finals, tracker, event, state, rollOut };
}

const annotationOf = (d: Deployment) => d.metadata.annotations?.["kuberollouttrigger/bake-time"];

Deno.test("bake: a rollout healthy for the bake time turns complete by the clock alone, with no watch event", async () => {
  const { clock, changes, finals, tracker, state, rollOut } = setup(30_000);
  rollOut();
  assertEquals(state(), "baking");
  assertEquals(changes.at(-1), false, "baking is a change the report shows, not final");
  const seen = changes.length;
  assertEquals(tracker.get("e1")?.deployments[0].rollout, {
    state: "baking",
    replicas: 3,
    updated: 3,
    ready: 3,
    available: 3,
  });
  // Healthy watch events while baking change nothing.
  tracker.observe("MODIFIED", api());
  await clock.advance(29_999);
  assertEquals([state(), changes.length], ["baking", seen]);
  await clock.advance(1);
  assertEquals([state(), changes.slice(seen), finals], ["gone", [true], ["complete"]]);
  assertEquals(tracker.size(), 0);
  assertEquals(clock.pending(), 0, "no timer left behind");
});

Deno.test("bake: a rollout that breaks while baking fails at once with the reason", async (t) => {
  const cases: [string, Deployment, string][] = [
    [
      "available replicas drop below desired",
      api({ ...complete, readyReplicas: 2, availableReplicas: 1 }),
      "failed: available replicas dropped to 1 of 3 while baking",
    ],
    [
      "the generation moves (someone else changed the spec)",
      api(complete, { generation: 3 }),
      "failed: generation changed while baking (2 to 3)",
    ],
    [
      "the Progressing condition turns False",
      api({
        ...complete,
        conditions: [{ type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded" }],
      }),
      "failed: ProgressDeadlineExceeded while baking",
    ],
    [
      "the Deployment is deleted",
      api(),
      "failed: the Deployment was deleted",
    ],
  ];
  for (const [name, broken, expected] of cases) {
    await t.step(name, async () => {
      const { clock, finals, tracker, state, rollOut } = setup(30_000);
      rollOut();
      await clock.advance(10_000);
      assertEquals(state(), "baking");
      tracker.observe(name.includes("deleted") ? "DELETED" : "MODIFIED", broken);
      assertEquals([state(), finals], ["gone", [expected]]);
      assertEquals(clock.pending(), 0, "the bake's timer and the deadline's are cancelled");
    });
  }
});

Deno.test("bake: the annotation overrides ROLLOUT_BAKE_TIME, 0s turns it off, a bad one fails the rollout", async (t) => {
  // [name, ROLLOUT_BAKE_TIME, annotation, state once it looks complete, ms until complete]
  const cases: [string, number, string | undefined, string, number][] = [
    ["bake off, no annotation: complete at once, as without bake time", 0, undefined, "gone", 0],
    ["the setting alone", 30_000, undefined, "baking", 30_000],
    ["the annotation where the setting is off", 0, "10s", "baking", 10_000],
    ["the annotation shorter than the setting", 60_000, "5s", "baking", 5_000],
    ["the annotation longer than the setting", 5_000, "1m", "baking", 60_000],
    ["0s turns the setting's bake off for this Deployment", 60_000, "0s", "gone", 0],
  ];
  for (const [name, bakeTimeMs, annotation, first, untilComplete] of cases) {
    await t.step(name, async () => {
      const { clock, finals, state, rollOut } = setup(bakeTimeMs);
      rollOut(api(complete, { bakeTime: annotation }));
      assertEquals(state(), first);
      if (untilComplete > 0) {
        await clock.advance(untilComplete - 1);
        assertEquals(state(), "baking");
        await clock.advance(1);
      }
      assertEquals([state(), finals], ["gone", ["complete"]]);
    });
  }
  await t.step("a bad annotation: failed with the reason, not complete without a bake", () => {
    const { finals, state, rollOut } = setup(0);
    rollOut(api(complete, { bakeTime: "two minutes" }));
    assertEquals([state(), finals], ["gone", [
      'failed: annotation kuberollouttrigger/bake-time "two minutes" is not a duration: expected a duration such as 5s or 10m',
    ]]);
  });
  await t.step("a bad annotation decides nothing before the rollout looks complete", () => {
    const { tracker, state, event } = setup(0);
    tracker.observe("ADDED", api({ observedGeneration: 1 }, { bakeTime: "soon" }));
    tracker.track(event());
    assertEquals(state(), "progressing");
  });
  await t.step(
    "the annotation set to 0s while baking ends the bake at the next watch event",
    () => {
      const { finals, tracker, state, rollOut } = setup(60_000);
      rollOut();
      assertEquals(state(), "baking");
      tracker.observe("MODIFIED", api(complete, { bakeTime: "0s" }));
      assertEquals([state(), finals], ["gone", ["complete"]]);
    },
  );
});

Deno.test("bake: the bake counts within ROLLOUT_TIMEOUT (the event's deadline)", async (t) => {
  await t.step(
    "still baking at the deadline: timed_out, saying it was baking and how far",
    async () => {
      const { clock, finals, state, rollOut } = setup(30_000);
      rollOut(api(), START + 20_000);
      await clock.advance(19_999);
      assertEquals(state(), "baking");
      await clock.advance(1);
      assertEquals(finals, [
        "timed_out: not complete within ROLLOUT_TIMEOUT (10m): still baking, healthy for 20s of its 30s bake time",
      ]);
      assertEquals(clock.pending(), 0);
    },
  );
  await t.step("a bake that ends exactly at the deadline is complete", async () => {
    const { clock, finals, rollOut } = setup(30_000);
    rollOut(api(), START + 30_000);
    await clock.advance(30_000);
    assertEquals(finals, ["complete"]);
  });
});

Deno.test("bake: a resumed event that was baking bakes again from when it is seen healthy, or from a kept start", async (t) => {
  await t.step(
    "no bake start kept (store.ts keeps none today): the bake starts again",
    async () => {
      const { clock, finals, tracker, event, state } = setup(30_000);
      tracker.observe("ADDED", api());
      const resumed = event();
      resumed.deployments[0].rollout = {
        state: "baking",
        replicas: 3,
        updated: 3,
        ready: 3,
        available: 3,
      };
      tracker.track(resumed);
      assertEquals(state(), "baking");
      await clock.advance(29_999);
      assertEquals(state(), "baking");
      await clock.advance(1);
      assertEquals(finals, ["complete"]);
    },
  );
  await t.step("a bake start kept on the target: the bake goes on from it", async () => {
    const { clock, finals, tracker, event } = setup(30_000);
    await clock.advance(20_000);
    tracker.observe("ADDED", api());
    const resumed = event(DEADLINE, { bake: { since: START, generation: 2 } });
    resumed.deployments[0].rollout = {
      state: "baking",
      replicas: 3,
      updated: 3,
      ready: 3,
      available: 3,
    };
    tracker.track(resumed);
    await clock.advance(9_999);
    assertEquals(finals, []);
    await clock.advance(1);
    assertEquals(finals, ["complete"]);
  });
  await t.step(
    "the bake start is on the followed target while baking (what a store would keep)",
    () => {
      const { tracker, rollOut } = setup(30_000);
      rollOut();
      assertEquals(tracker.get("e1")?.targets[0].bake, { since: START, generation: 2 });
    },
  );
});

Deno.test("rolloutStep() bakes only once the rollout looks complete, and says when the bake ends", async (t) => {
  const target = { namespace: "ns", name: "api", generation: 2, uid: "uid-api" };
  const progressing = {
    state: "progressing" as const,
    replicas: 3,
    updated: 1,
    ready: 1,
    available: 1,
  };
  const counts = { replicas: 3, updated: 3, ready: 3, available: 3 };
  const context = { now: 5_000, bakeTimeMs: 30_000 };
  await t.step("still rolling: progressing, no bake", () => {
    const d = api({ ...complete, updatedReplicas: 1, availableReplicas: 1 });
    assertEquals(rolloutStep(progressing, snapshotOf(d), target, context), {
      rollout: { ...progressing, available: 1, ready: 3 },
    });
  });
  await t.step("looks complete: baking from now, ending a bake time later", () => {
    assertEquals(rolloutStep(progressing, snapshotOf(api()), target, context), {
      rollout: { state: "baking", ...counts },
      bake: { since: 5_000, generation: 2 },
      wakeAt: 35_000,
    });
  });
  await t.step("bake off: complete", () => {
    assertEquals(
      rolloutStep(progressing, snapshotOf(api()), target, { ...context, bakeTimeMs: 0 }),
      { rollout: { state: "complete", ...counts } },
    );
  });
  await t.step("final already: nothing to do", () => {
    assertEquals(
      rolloutStep({ state: "complete", ...counts }, snapshotOf(api()), target, context),
      undefined,
    );
  });
});
