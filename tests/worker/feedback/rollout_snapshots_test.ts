/** The tracker's slim copies of Deployments: what they keep, and that a late answer never wins. */

import { assertEquals } from "../../helpers/assert.ts";
import type { Deployment } from "../../../worker/kube/objects.ts";
import { rolloutProgress } from "../../../worker/feedback/rollout_progress.ts";
import {
  latestAt,
  progressOf,
  snapshotOf,
  type Snapshots,
  updateLatest,
} from "../../../worker/feedback/rollout_snapshots.ts";

function deployment(
  observedGeneration: number,
  status: Partial<NonNullable<Deployment["status"]>> = {},
  uid = "uid-web",
): Deployment {
  return {
    metadata: { namespace: "apps", name: "web", uid, generation: 4, resourceVersion: "1" },
    spec: { replicas: 3, template: { spec: { containers: [] } } },
    status: { observedGeneration, replicas: 3, updatedReplicas: 3, ...status },
  } as Deployment;
}

Deno.test("progressOf(snapshotOf(d)) reads as rolloutProgress reads d itself", async (t) => {
  const cases: [string, Deployment][] = [
    ["complete", deployment(4, { readyReplicas: 3, availableReplicas: 3 })],
    ["not observed yet", deployment(3)],
    ["still rolling", deployment(4, { updatedReplicas: 1, availableReplicas: 2 })],
    [
      "past its progress deadline",
      deployment(4, {
        conditions: [{ type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded" }],
      }),
    ],
    ["no status at all", { ...deployment(4), status: undefined } as Deployment],
  ];
  for (const [name, d] of cases) {
    await t.step(name, () => {
      assertEquals(rolloutProgress(progressOf(snapshotOf(d)), 4), rolloutProgress(d, 4));
    });
  }
});

Deno.test("updateLatest() keeps the newest status: an older observed generation changes nothing", () => {
  const latest: Snapshots = new Map();
  assertEquals(updateLatest(latest, "ADDED", deployment(4)), true);
  assertEquals(updateLatest(latest, "MODIFIED", deployment(3)), false, "an older answer");
  assertEquals(latestAt(latest, "apps/web")?.observedGeneration, 4);
  // A Deployment created again under the same name starts over, whatever it observed.
  assertEquals(updateLatest(latest, "ADDED", deployment(1, {}, "uid-new")), true);
  assertEquals(latestAt(latest, "apps/web")?.uid, "uid-new");
});

Deno.test("updateLatest() forgets a deleted Deployment and an emptied namespace", () => {
  const latest: Snapshots = new Map();
  updateLatest(latest, "ADDED", deployment(4));
  assertEquals(updateLatest(latest, "DELETED", deployment(4)), true);
  assertEquals(latestAt(latest, "apps/web"), undefined);
  assertEquals(latest.size, 0);
});

Deno.test("snapshotOf() keeps the bake-time annotation and the Progressing status the bake reads", () => {
  const d = deployment(4, {
    conditions: [{ type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded" }],
  });
  d.metadata.annotations = { "kuberollouttrigger/bake-time": "2m", "other": "x".repeat(1000) };
  const s = snapshotOf(d);
  assertEquals([s.bakeTime, s.progressingStatus, s.progressing], [
    "2m",
    "False",
    "ProgressDeadlineExceeded",
  ]);
  assertEquals(progressOf(s).status?.conditions, [
    { type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded" },
  ]);
  assertEquals(snapshotOf(deployment(4)).bakeTime, undefined);
});

Deno.test("security: snapshotOf() keeps at most 64 characters of a bake-time annotation", () => {
  const d = deployment(4);
  d.metadata.annotations = { "kuberollouttrigger/bake-time": "1".repeat(200_000) + "s" };
  assertEquals(snapshotOf(d).bakeTime, `${"1".repeat(64)}…`);
});
