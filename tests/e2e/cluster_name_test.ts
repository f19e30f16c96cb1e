/**
 * Two independent clusters (each its own kube-apiserver and CA) started with
 * one CLUSTER_NAME, with the real worker: the second is not ready, says why
 * in one line naming both, reads no events (so it takes none from the first
 * cluster's consumer group), and every event is still handled by the first.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  deploymentManifest,
  type ExtraCluster,
  openCluster,
  startExtraCluster,
} from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { type Program, startProgram, startWorker } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { appendEvent, startValkey } from "../helpers/valkey.ts";

const info = withoutValkey() ? undefined : requireControlPlane("the cluster name tests");

Deno.test({
  name:
    "a second cluster started under a CLUSTER_NAME another cluster holds is not ready, says why naming both, and takes no event",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    const programs: Program[] = [];
    let second: ExtraCluster | undefined;
    try {
      const env = {
        VALKEY_ADDR: valkey.addr,
        VALKEY_CHANNEL: "krt-names",
        ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
        CLUSTER_NAME: "prod",
      };
      const first = await cluster.workerNamespace("krt-name");
      await cluster.createDeployment(
        deploymentManifest(first.ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      const owner = await startWorker({ ...env, WATCH_NAMESPACES: first.ns }, first.kubeconfig);
      programs.push(owner.program);

      second = await startExtraCluster("same-name");
      const there = second.cluster;
      await there.admin.createNamespace(first.ns);
      await there.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: first.ns });
      await there.createDeployment(
        deploymentManifest(first.ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      const kubeconfig = await there.workerKubeconfig();
      const intruder = startProgram({
        args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
        env: { ...env, WATCH_NAMESPACES: first.ns, KUBECONFIG: kubeconfig },
        permissions: ["-P=worker", `--allow-read=${kubeconfig}`],
      });
      programs.push(intruder);
      const listening = await intruder.waitForLog((l) =>
        l.msg === "worker health server listening"
      );
      const refused = await intruder.waitForLog((l) => l.level === "error", 20_000);
      assertMatch(
        refused.msg,
        /^CLUSTER_NAME "prod" is held by another cluster \(.*127\.0\.0\.1.*\) — this worker is .*127\.0\.0\.1.*; give each cluster its own CLUSTER_NAME$/,
      );
      assert(refused.msg.includes(info!.server), "names the first cluster's API server");
      assert(refused.msg.includes(second.plane.server), "names its own API server");
      await intruder.waitForLog((l) => l.msg === "inventory synced", 20_000);
      const ready = await fetch(`http://${listening.addr}/readyz`);
      assertEquals(ready.status, 503);
      assertEquals((await ready.json()).checks.cluster_registered, "failing");

      const before = {
        here: (await cluster.getDeployment(first.ns, "app")).metadata.generation,
        there: (await there.getDeployment(first.ns, "app")).metadata.generation,
      };
      for (let i = 0; i < 3; i++) {
        const id = crypto.randomUUID();
        await appendEvent(
          valkey,
          JSON.stringify({
            id,
            time: new Date().toISOString(),
            image: "ghcr.io/acme/app",
            tags: ["dev"],
          }),
        );
        await owner.program.waitForLog((l) => l.msg === "event handled" && l.event_id === id);
      }
      assert(
        !intruder.logs.some((l) => l.msg === "reading the event stream" || l.event_id),
        "the second cluster read nothing",
      );
      assertEquals(
        (await there.getDeployment(first.ns, "app")).metadata.generation,
        before.there,
        "nothing restarted in the second cluster",
      );
      assert((await cluster.getDeployment(first.ns, "app")).metadata.generation > before.here);
    } finally {
      for (const p of programs) await p.stop();
      await valkey.stop();
      await cluster.cleanup();
      await second?.stop();
    }
  },
});
