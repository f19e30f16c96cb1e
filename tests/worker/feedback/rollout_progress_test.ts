import { assertEquals } from "../../helpers/assert.ts";
import {
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
