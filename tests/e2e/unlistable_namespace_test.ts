/**
 * One namespace in WATCH_NAMESPACES without the worker's Role, with the real
 * worker: events for the other namespace are handled at once (none waits on
 * the namespace it cannot list), the report names the unavailable namespace
 * with the API's answer and fails the cluster for the event, and /readyz
 * says why it is not ready.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { CLUSTERS_KEY } from "../../shared/event_status.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { statusClient } from "../helpers/feedback.ts";
import { type Program, startProgram } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkey } from "../helpers/valkey.ts";

const info = withoutValkey() ? undefined : requireControlPlane("the unlistable namespace test");
const CHANNEL = "krt-unlistable";

Deno.test({
  name:
    "a namespace the worker may not list holds no event hostage: the other is handled in time, the report names it, /readyz says why",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    const status = statusClient(valkey, CHANNEL);
    let worker: Program | undefined;
    try {
      const open = await cluster.workerNamespace("krt-open");
      const closed = await cluster.namespace("krt-closed");
      for (const ns of [open.ns, closed]) {
        await cluster.createDeployment(
          deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
        );
      }
      worker = startProgram({
        args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
        env: {
          VALKEY_ADDR: valkey.addr,
          VALKEY_CHANNEL: CHANNEL,
          ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
          CLUSTER_NAME: "partial",
          WATCH_NAMESPACES: `${open.ns},${closed}`,
          ROLLOUT_TIMEOUT: "0s",
          KUBECONFIG: open.kubeconfig,
        },
        permissions: ["-P=worker", `--allow-read=${open.kubeconfig}`],
      });
      const listening = await worker.waitForLog((l) => l.msg === "worker health server listening");
      await worker.waitForLog((l) => l.msg === "reading the event stream", 20_000);
      await eventually(
        "the cluster announced to web",
        async () => await status.valkey.call("ZSCORE", CLUSTERS_KEY, "partial") !== null,
        20_000,
        50,
      );
      const before = (await cluster.getDeployment(open.ns, "app")).metadata.generation;
      const published = await status.publish("ghcr.io/acme/app", ["dev"]);
      assertEquals(published.clusters, ["partial"], "registered although not ready");
      const handled = await worker.waitForLog(
        (l) => l.msg === "event handled" && l.event_id === published.id,
        20_000,
      );
      assertEquals(handled.restarted, [`${open.ns}/app`]);
      assertEquals(handled.unavailable_scopes, [closed]);
      assertEquals((await cluster.getDeployment(open.ns, "app")).metadata.generation, before + 1);

      const report = await status.waitForReport(published.id, "partial", () => true);
      assertEquals(report.state, "failed");
      assertEquals(report.counts.restarted, 1);
      assertMatch(report.reason!, new RegExp(`namespace ${closed}: 403 Forbidden`));

      const ready = await fetch(`http://${listening.addr}/readyz`);
      assertEquals(ready.status, 503);
      const body = await ready.json();
      assertEquals(body.checks.inventory_synced, "failing");
      assertMatch(body.details.inventory_synced, new RegExp(closed));
      assert(!JSON.stringify(body).includes("eyJ"), "no token in the answer");
    } finally {
      await worker?.stop();
      status.close();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
