/**
 * Bake time against the real servers: the shared cluster's controllers and
 * test node roll Deployments out, a worker runs in process through runWorker
 * with ROLLOUT_BAKE_TIME from its settings, and each cluster report is read
 * back with web's parser. A healthy rollout is reported `baking` for the bake
 * time, then `complete`, with no further watch event needed; one whose
 * available replicas drop while it bakes (a pod turns unready) ends `failed`.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { deploymentManifest, openCluster } from "../helpers/cluster.ts";
import { requireRolloutCluster } from "../helpers/control_plane.ts";
import { outcomes, startTestWorker, statusClient, type TestWorker } from "../helpers/feedback.ts";
import { getDeployment, makeOnePodUnready, rolloutComplete } from "../helpers/rollout.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkey } from "../helpers/valkey.ts";
import type { ClusterReport } from "../../shared/event_status.ts";

const rollout = requireRolloutCluster("the bake time tests");
const options = {
  ignore: rollout === undefined || withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
};
const final = (r: ClusterReport) => r.state !== "in_progress";
const baking = (r: ClusterReport) => r.deployments[0]?.rollout?.state === "baking";

Deno.test({
  name:
    "bake: on the real controllers a rollout is baking for ROLLOUT_BAKE_TIME, then complete; one whose available replicas drop while baking (its annotation's bake) ends failed with the reason",
  ...options,
  async fn(t) {
    const cluster = openCluster(rollout!.info);
    const valkey = await startValkey();
    const status = statusClient(valkey, "krt-bake");
    let worker: TestWorker | undefined;
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-bake");
      await cluster.createDeployment(
        deploymentManifest(ns, "steady", [{ image: "ghcr.io/acme/steady:dev" }], { replicas: 2 }),
      );
      // The annotation overrides the worker's 4s: long enough that only a break ends the bake.
      await cluster.createDeployment(
        deploymentManifest(ns, "flaky", [{ image: "ghcr.io/acme/flaky:dev" }], {
          replicas: 2,
          annotations: { "kuberollouttrigger/bake-time": "5m" },
        }),
      );
      worker = await startTestWorker({
        KUBECONFIG: kubeconfig,
        WATCH_NAMESPACES: ns,
        VALKEY_ADDR: valkey.addr,
        VALKEY_CHANNEL: "krt-bake",
        CLUSTER_NAME: "bake",
        ROLLOUT_BAKE_TIME: "4s",
      });

      await t.step("a healthy rollout is baking (in progress), then complete", async () => {
        const { id } = await status.publish("ghcr.io/acme/steady", ["dev"]);
        const during = await status.waitForReport(id, "bake", (r) => baking(r) || final(r));
        assertEquals(outcomes(during), ["steady: restarted baking"], "seen baking first");
        assertEquals([during.state, during.counts.progressing, during.counts.complete], [
          "in_progress",
          1,
          0,
        ]);
        assertEquals(during.deployments[0].rollout?.available, 2);
        // The cluster already shows the rollout done: only the bake holds the report back.
        assert(rolloutComplete(await getDeployment(cluster.admin, ns, "steady")));
        const done = await status.waitForReport(id, "bake", final, 60_000);
        assertEquals(done.state, "succeeded");
        assertEquals(outcomes(done), ["steady: restarted complete"]);
        const bakedMs = Date.parse(done.updated) - Date.parse(during.updated);
        assert(bakedMs >= 3_000, `complete ${bakedMs} ms after baking was reported, not before`);
      });

      await t.step("available replicas dropping while baking fail the rollout", async () => {
        const { id } = await status.publish("ghcr.io/acme/flaky", ["dev"]);
        const during = await status.waitForReport(id, "bake", (r) => baking(r) || final(r));
        assertEquals(outcomes(during), ["flaky: restarted baking"]);
        await makeOnePodUnready(cluster.admin, ns, "flaky");
        const report = await status.waitForReport(id, "bake", final, 60_000);
        assertEquals(report.state, "failed");
        assertEquals(outcomes(report), [
          "flaky: restarted failed/available replicas dropped to 1 of 2 while baking",
        ]);
        assertEquals(report.counts.rollout_failed, 1);
        const line = worker!.logs.find((l) => l.msg === "rollout finished" && l.event_id === id);
        assertEquals([line?.deployment, line?.state], ["flaky", "failed"]);
      });
    } finally {
      await worker?.stop();
      status.close();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
