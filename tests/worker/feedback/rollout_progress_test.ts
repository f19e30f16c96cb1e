import { assertEquals } from "../../helpers/assert.ts";
import {
  BAKE_TIME_ANNOTATION,
  bakeTimeOf,
  bakingRollout,
  type DeploymentProgress,
  rolloutProgress,
} from "../../../worker/feedback/rollout_progress.ts";

function deployment(
  status: DeploymentProgress["status"],
  replicas: unknown = 3,
): DeploymentProgress {
  return { metadata: { generation: 5 }, spec: { replicas }, status };
}

const DONE = {
  observedGeneration: 5,
  replicas: 3,
  updatedReplicas: 3,
  readyReplicas: 3,
  availableReplicas: 3,
};

Deno.test("rolloutProgress() decides as kubectl rollout status does", async (t) => {
  const cases: [string, DeploymentProgress, string, string?][] = [
    [
      "the controller has not seen the restart yet",
      deployment({ ...DONE, observedGeneration: 4 }),
      "progressing",
    ],
    [
      "a stale deadline condition before the restart is observed",
      deployment({
        ...DONE,
        observedGeneration: 4,
        conditions: [{ type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded" }],
      }),
      "progressing",
    ],
    ["new replicas not all updated", deployment({ ...DONE, updatedReplicas: 1 }), "progressing"],
    ["old replicas pending termination", deployment({ ...DONE, replicas: 4 }), "progressing"],
    ["updated but not yet available", deployment({ ...DONE, availableReplicas: 2 }), "progressing"],
    ["every replica updated and available", deployment(DONE), "complete"],
    [
      "observed a later generation, complete",
      deployment({ ...DONE, observedGeneration: 7 }),
      "complete",
    ],
    ["scaled to zero", deployment({ observedGeneration: 5 }, 0), "complete"],
    [
      "replicas unset means one",
      {
        metadata: { generation: 5 },
        spec: {},
        status: { ...DONE, replicas: 1, updatedReplicas: 1, availableReplicas: 1 },
      },
      "complete",
    ],
    [
      "deadline exceeded",
      deployment({
        ...DONE,
        updatedReplicas: 1,
        availableReplicas: 2,
        conditions: [{ type: "Available", status: "True" }, {
          type: "Progressing",
          status: "False",
          reason: "ProgressDeadlineExceeded",
        }],
      }),
      "failed",
      "ProgressDeadlineExceeded",
    ],
    ["no status at all", { metadata: { generation: 5 } }, "progressing"],
    [
      "garbage counts read as zero",
      deployment({
        observedGeneration: "5",
        updatedReplicas: -3,
        availableReplicas: 1.5,
      }),
      "progressing",
    ],
  ];
  for (const [name, d, state, reason] of cases) {
    await t.step(name, () => {
      const report = rolloutProgress(d, 5);
      assertEquals(report.state, state);
      assertEquals(report.reason, reason);
    });
  }
});

Deno.test("rolloutProgress() reports the replica counts a CI table shows", () => {
  assertEquals(
    rolloutProgress(
      deployment({ ...DONE, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 1 }),
      5,
    ),
    { state: "progressing", replicas: 3, updated: 2, ready: 2, available: 1 },
  );
});

Deno.test("bakeTimeOf() takes the bake-time annotation over ROLLOUT_BAKE_TIME, and a bad one is a reason", async (t) => {
  assertEquals(BAKE_TIME_ANNOTATION, "kuberollouttrigger/bake-time");
  const bad = (shown: string, why = "expected a duration such as 5s or 10m") => ({
    reason: `annotation kuberollouttrigger/bake-time ${shown} is not a duration: ${why}`,
  });
  const cases: [string, unknown, number, number | { reason: string }][] = [
    ["no annotation: the setting", undefined, 60_000, 60_000],
    ["no annotation, setting off: no bake", undefined, 0, 0],
    ["the annotation overrides the setting", "2m", 60_000, 120_000],
    ["the annotation sets one where the setting is off", "90s", 0, 90_000],
    ["the settings' duration grammar", "1h30m", 0, 5_400_000],
    ["0s turns it off for this Deployment", "0s", 60_000, 0],
    ["not a duration", "soon", 60_000, bad('"soon"')],
    ["a number without a unit", "120", 60_000, bad('"120"')],
    ["empty", "", 60_000, bad('""')],
    ["not a string", 120, 60_000, bad('""')],
    ["out of range", "9000h", 0, bad('"9000h"', "duration is out of range")],
  ];
  for (const [name, annotation, defaultMs, expected] of cases) {
    await t.step(name, () => assertEquals(bakeTimeOf(annotation, defaultMs), expected));
  }
});

Deno.test("bakingRollout() keeps a rollout that looked complete baking while healthy, and fails it when it breaks", async (t) => {
  const bake = { since: 10_000, generation: 5 };
  const counts = { replicas: 3, updated: 3, ready: 3, available: 3 };
  const healthy = deployment({
    ...DONE,
    conditions: [{ type: "Progressing", status: "True", reason: "NewReplicaSetAvailable" }],
  });
  const read = (d: DeploymentProgress) => rolloutProgress(d, 5);
  // [name, Deployment now, now, bake time, state, reason]
  const cases: [string, DeploymentProgress, number, number, string, string?][] = [
    ["healthy, bake time not up", healthy, 39_999, 30_000, "baking"],
    ["healthy for the whole bake time", healthy, 40_000, 30_000, "complete"],
    [
      "available replicas dropped",
      deployment({ ...DONE, readyReplicas: 2, availableReplicas: 1 }),
      20_000,
      30_000,
      "failed",
      "available replicas dropped to 1 of 3 while baking",
    ],
    [
      "the generation moved (a new spec change)",
      { ...healthy, metadata: { generation: 6 } },
      20_000,
      30_000,
      "failed",
      "generation changed while baking (5 to 6)",
    ],
    [
      "the generation moved, even after the bake time (the change comes first)",
      { ...healthy, metadata: { generation: 6 } },
      90_000,
      30_000,
      "failed",
      "generation changed while baking (5 to 6)",
    ],
    [
      "Progressing turned False",
      deployment({
        ...DONE,
        conditions: [{ type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded" }],
      }),
      20_000,
      30_000,
      "failed",
      "ProgressDeadlineExceeded while baking",
    ],
    [
      "Progressing False without a reason",
      deployment({ ...DONE, conditions: [{ type: "Progressing", status: "False" }] }),
      20_000,
      30_000,
      "failed",
      "Progressing condition False while baking",
    ],
    ["bake time turned off (0s) mid-bake", healthy, 10_000, 0, "complete"],
  ];
  for (const [name, d, now, bakeMs, state, reason] of cases) {
    await t.step(name, () => {
      const report = bakingRollout({ read: read(d), deployment: d, bake, bakeMs, now });
      assertEquals([report.state, report.reason], [state, reason]);
      if (state !== "failed") assertEquals(report, { state, ...counts } as typeof report);
    });
  }
});
