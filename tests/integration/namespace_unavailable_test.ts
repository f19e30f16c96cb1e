/**
 * One namespace the worker may not list holds no event hostage, on the real
 * kube-apiserver with the worker's ServiceAccount: WATCH_NAMESPACES names two
 * namespaces, and only one has the shipped Role. The inventory settles, finds
 * the Deployments of the listable namespace, names the other with the API's
 * 403, and says so in /readyz's detail and in the scope gauge; once the Role
 * is created, the namespace lists and is available. Both ways of listing are
 * proven: the streaming list (the server's default) and paged lists.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { waitForAccess } from "../helpers/capabilities.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { parseCommandLine } from "../../config/command_line.ts";
import { createLogger } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import { probeRoutes } from "../../lib/probes.ts";
import { createInventory, type Inventory } from "../../worker/inventory/inventory.ts";
import { createKubeApi } from "../../worker/kube/api.ts";
import { loadKubeAccess } from "../../worker/kube/config.ts";
import {
  createWorkerMetrics,
  exportScopeAvailability,
  exportScopes,
} from "../../worker/metrics.ts";

const info = requireControlPlane("the unlistable namespace test");

type Line = Record<string, unknown> & { msg: string };

/** The namespaces WATCH_NAMESPACES=`value` gives the worker. */
function watchNamespaces(value: string): string[] {
  const parsed = parseCommandLine("worker", [], (name) =>
    ({
      WATCH_NAMESPACES: value,
      VALKEY_ADDR: "127.0.0.1:6379",
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    } as Record<string, string>)[name]);
  assert(parsed.kind === "config");
  return [...parsed.config.watchNamespaces];
}

/** /readyz and the scope gauge as the worker serves them, from this inventory. */
async function probe(inventory: Inventory) {
  const registry = createRegistry();
  const metrics = createWorkerMetrics(registry);
  exportScopes(metrics, Object.keys(inventory.scopes()));
  const routes = probeRoutes({
    registry,
    readiness: { inventory_synced: () => inventory.readiness() },
    beforeScrape: () => exportScopeAvailability(metrics, inventory),
  });
  const readyz = await routes["/readyz"]();
  const gauge = (await (await routes["/metrics"]()).text()).split("\n")
    .filter((l) => l.startsWith("kuberollouttrigger_worker_inventory_scope_unavailable{"));
  return { status: readyz.status, body: await readyz.json(), gauge };
}

Deno.test({
  name:
    "a namespace without the worker's Role: the inventory settles without it, names it with the 403, and lists it once the Role exists",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    const stop = new AbortController();
    const running: Promise<void>[] = [];
    try {
      const { ns: open, kubeconfig } = await cluster.workerNamespace("krt-open");
      const closed = await cluster.namespace("krt-closed");
      for (const verb of ["list", "watch"]) await waitForAccess(cluster, open, verb, true);
      await waitForAccess(cluster, closed, "list", false);
      for (const ns of [open, closed]) {
        await cluster.createDeployment(
          deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
        );
      }
      const token = JSON.parse(await Deno.readTextFile(kubeconfig)).users[0].user.token;
      assert(typeof token === "string" && token.length > 20, "the worker's token, to look for");
      const namespaces = watchNamespaces(`${open},${closed}`);
      const access = await loadKubeAccess({ kubeconfig });
      const api = createKubeApi({
        server: access.server,
        httpClient: access.httpClient,
        authorization: access.authorization,
      });

      const logs: Line[] = [];
      const started = performance.now();
      const inventories = [true, false].map((streamingList) => {
        const inventory = createInventory({
          api,
          namespaces,
          streamingList,
          logger: createLogger({
            level: "debug",
            write: (line) => logs.push(JSON.parse(line)),
            fields: { streaming: streamingList },
          }),
        });
        running.push(inventory.run(stop.signal));
        let synced = false;
        void inventory.whenSynced(stop.signal).then(() => synced = inventory.synced());
        return {
          how: streamingList ? "streaming list" : "paged lists",
          inventory,
          woken: () => synced,
        };
      });

      for (const { how, inventory } of inventories) {
        await t.step(`${how}: settled, matching the listable namespace only`, async () => {
          await eventually("settled", () => inventory.settled() || undefined, 20_000);
          assert(performance.now() - started < 15_000, "at the first failure, not after retries");
          await eventually("open listed", () => inventory.scopes()[open] || undefined, 10_000);
          assertEquals(inventory.synced(), false);
          assertEquals(
            inventory.candidates("ghcr.io/acme/app").map((d) => `${d.namespace}/${d.name}`),
            [`${open}/app`],
          );
          const unavailable = inventory.unavailable();
          assertEquals(unavailable.map((u) => u.scope), [closed]);
          const { reason } = unavailable[0];
          assertMatch(
            reason,
            new RegExp(
              `^namespace ${closed}: 403 Forbidden: deployments\\.apps is forbidden: User ` +
                `"system:serviceaccount:kuberollouttrigger:kuberollouttrigger-worker" ` +
                `cannot (list|watch) resource "deployments"`,
            ),
          );
          assert([...reason].length <= 200 && !/[\p{Cc}]/u.test(reason), reason);

          const { status, body, gauge } = await probe(inventory);
          assertEquals(status, 503);
          assertEquals(body.checks, { inventory_synced: "failing" });
          assertEquals(body.details, { inventory_synced: reason });
          assertEquals(gauge.sort(), [
            `kuberollouttrigger_worker_inventory_scope_unavailable{scope="${closed}"} 1`,
            `kuberollouttrigger_worker_inventory_scope_unavailable{scope="${open}"} 0`,
          ]);
        });
      }

      await t.step("security: the worker's token is in no reason, detail or log line", () => {
        for (const { inventory } of inventories) {
          assert(!JSON.stringify(inventory.unavailable()).includes(token));
          assert(!JSON.stringify(inventory.readiness()).includes(token));
        }
        assert(logs.length > 0 && !logs.some((l) => JSON.stringify(l).includes(token)));
      });

      await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: closed });
      for (const verb of ["list", "watch"]) await waitForAccess(cluster, closed, verb, true);

      for (const { how, inventory, woken } of inventories) {
        await t.step(
          `${how}: once the Role exists, the namespace lists and is available`,
          async () => {
            // The reflector retries with a backoff of at most 10 s.
            await eventually("synced", () => inventory.synced() || undefined, 30_000);
            // Feedback resumes on this promise, made while the namespace could not be listed.
            await eventually("whenSynced() resolved", () => woken() || undefined, 2000);
            assertEquals(inventory.unavailable(), []);
            assertEquals(
              inventory.candidates("ghcr.io/acme/app").map((d) => `${d.namespace}/${d.name}`)
                .sort(),
              [`${closed}/app`, `${open}/app`].sort(),
            );
            const { status, body, gauge } = await eventually("ready", async () => {
              const p = await probe(inventory);
              return p.status === 200 ? p : undefined;
            }, 10_000);
            assertEquals([status, body], [200, {
              status: "ready",
              checks: { inventory_synced: "ok" },
            }]);
            assertEquals(gauge.sort(), [
              `kuberollouttrigger_worker_inventory_scope_unavailable{scope="${closed}"} 0`,
              `kuberollouttrigger_worker_inventory_scope_unavailable{scope="${open}"} 0`,
            ]);
          },
        );
      }
    } finally {
      stop.abort();
      await Promise.all(running);
      await cluster.cleanup();
    }
  },
});
