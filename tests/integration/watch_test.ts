/**
 * The worker's watch discipline against the real kube-apiserver, through a
 * loopback proxy that can stall a watch without closing it, hold lists, and
 * answer a watch with 410 Gone or a line that is not JSON. The worker runs
 * in-process through runWorker (the function main.ts calls) with a short idle
 * deadline, its real kubeconfig loading, API client, health server and Valkey
 * subscription. Each fault must turn /readyz false, then the inventory must
 * catch up (a Deployment created during the fault is restarted by a later
 * event) and /readyz must turn true again.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { waitForAccess } from "../helpers/capabilities.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { createRandom } from "../helpers/random.ts";
import { startStallProxy } from "../helpers/stall_proxy.ts";
import { appendEvent, startValkey } from "../helpers/valkey.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { parseCommandLine } from "../../config/command_line.ts";
import { createLogger } from "../../lib/log.ts";
import { runWorker } from "../../worker/worker.ts";

const info = withoutValkey() ? undefined : requireControlPlane("the watch fault tests");
const CHANNEL = "krt-watch-faults";
const IDLE_MS = 3000;
const RESTARTED_AT = "kubectl.kubernetes.io/restartedAt";
const NOT_JSON = "not json: token=watch-secret-canary";

type Line = Record<string, unknown> & { msg: string };

Deno.test({
  name:
    "the worker's inventory survives a dead watch, a 410 Gone and a malformed line from the real API server",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    const proxy = startStallProxy({ server: info!.server, caPem: info!.caPem });
    const valkey = await startValkey();
    const stop = new AbortController();
    const logs: Line[] = [];
    let running: Promise<void> | undefined;
    let failed = false;
    const step = async (name: string, fn: () => Promise<void>) => {
      if (!await t.step(name, fn)) failed = true;
    };
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-watch");
      for (const verb of ["list", "watch", "get", "patch"]) {
        await waitForAccess(cluster, ns, verb, true);
      }
      await cluster.createDeployment(
        deploymentManifest(ns, "first", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      // The worker's own kubeconfig, pointed at the proxy.
      const doc = JSON.parse(await Deno.readTextFile(kubeconfig));
      doc.clusters[0].cluster.server = proxy.url;
      const proxied = `${kubeconfig}.proxied`;
      await Deno.writeTextFile(proxied, JSON.stringify(doc), { mode: 0o600 });

      const parsed = parseCommandLine("worker", [], (name) =>
        ({
          KUBECONFIG: proxied,
          WATCH_NAMESPACES: ns,
          VALKEY_ADDR: valkey.addr,
          VALKEY_CHANNEL: CHANNEL,
          ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
          HEALTH_LISTEN_ADDR: "127.0.0.1:0",
          RESTART_DEDUP_WINDOW: "0s",
          CLUSTER_NAME: "watch",
          LOG_LEVEL: "debug",
        } as Record<string, string>)[name]);
      assert(parsed.kind === "config");
      const seed = 1234;
      const randoms = createRandom(seed);
      let healthUrl = "";
      running = runWorker(parsed.config, {
        logger: createLogger({
          level: "debug",
          fields: { mode: "worker" },
          write: (line) => logs.push(JSON.parse(line)),
        }),
        signal: stop.signal,
        onListen: (addr) => healthUrl = `http://${addr.hostname}:${addr.port}`,
        watch: { watchIdleTimeoutMs: IDLE_MS, random: randoms.next },
      });
      await eventually(
        "subscribed",
        () => logs.find((l) => l.msg === "reading the event stream"),
        20_000,
      );

      const readyz = async () => {
        const res = await fetch(`${healthUrl}/readyz`);
        return { status: res.status, body: await res.json() };
      };
      const waitReady = (ready: boolean, what: string) =>
        eventually(what, async () => {
          const r = await readyz();
          return (r.status === 200) === ready ? r : undefined;
        }, 30_000);
      const metric = async (name: string) => {
        const text = await (await fetch(`${healthUrl}/metrics`)).text();
        const line = text.split("\n").find((l) => l.startsWith(`${name}{scope="${ns}"}`));
        return line === undefined ? 0 : Number(line.split(" ").pop());
      };
      /** Publishes an event for ghcr.io/acme/app:dev; resolves to the names the worker restarted. */
      const restartApp = async () => {
        const id = crypto.randomUUID();
        const message = JSON.stringify({
          id,
          time: new Date().toISOString(),
          image: "ghcr.io/acme/app",
          tags: ["dev"],
        });
        await appendEvent(valkey, message);
        const summary = await eventually(
          "event handled",
          () => logs.find((l) => l.msg === "event handled" && l.event_id === id),
          15_000,
        );
        return (summary.restarted as string[]).map((k) => k.split("/")[1]).sort();
      };
      const restartedAt = async (name: string) =>
        (await cluster.getDeployment(ns, name)).spec.template.metadata?.annotations
          ?.[RESTARTED_AT];

      await step("ready once listed and watching through the proxy", async () => {
        const r = await waitReady(true, "ready");
        assertEquals(r.body.checks, {
          inventory_synced: "ok",
          cluster_registered: "ok",
          events_reading: "ok",
        });
        assertEquals(await metric("kuberollouttrigger_worker_inventory_current"), 1);
      });

      await step(
        "each watch asks the real API server for a random timeout in [300, 600) s",
        async () => {
          await eventually(
            "two watches",
            () => proxy.requests.filter((r) => r.verb === "watch")[1],
            15_000,
          );
          const replay = createRandom(seed);
          // Every streamed request draws one, the streaming list (counted as a list) included.
          const watches = proxy.requests.filter((r) => r.url.searchParams.get("watch") === "1");
          for (const w of watches) {
            assertEquals(w.url.searchParams.get("allowWatchBookmarks"), "true");
            assertEquals(
              Number(w.url.searchParams.get("timeoutSeconds")),
              Math.floor(300 * (1 + replay.next())),
            );
          }
        },
      );

      await step(
        "dead connection: /readyz fails, the watch resumes, the Deployment created meanwhile is restarted",
        async () => {
          const relists = await metric("kuberollouttrigger_worker_inventory_relists_total");
          const idle = await metric("kuberollouttrigger_worker_watch_idle_total");
          proxy.stallWatches();
          // The silent watch must be the one that gets aborted: wait for the deadline to fire.
          await eventually(
            "an idle abort during the stall",
            async () =>
              await metric("kuberollouttrigger_worker_watch_idle_total") > idle || undefined,
            30_000,
          );
          const notReady = await waitReady(false, "not ready while the watch is dead");
          assertEquals(notReady.body.checks.inventory_synced, "failing");
          assertEquals(await metric("kuberollouttrigger_worker_inventory_current"), 0);
          await cluster.createDeployment(
            deploymentManifest(ns, "during-stall", [{ image: "ghcr.io/acme/app:dev" }]),
          );
          const watchesBefore = proxy.requests.filter((r) => r.verb === "watch").length;
          proxy.resumeWatches();
          await waitReady(true, "ready again after the stall");
          assertEquals(await restartApp(), ["during-stall", "first"]);
          assert(await restartedAt("during-stall"), "during-stall restarted");
          assertEquals(
            await metric("kuberollouttrigger_worker_inventory_relists_total"),
            relists,
            "caught up by resuming the watch from its resourceVersion, not by relisting",
          );
          assert(proxy.requests.filter((r) => r.verb === "watch").length >= watchesBefore);
          assert(logs.some((l) => l.msg.startsWith("watch idle") && l.level === "warn"));
        },
      );

      const created = ["during-stall", "first"];
      for (
        const [kind, name] of [
          ["gone-event", "after-gone-event"],
          ["gone-status", "after-gone-status"],
        ] as const
      ) {
        await step(
          `410 Gone (${kind}): /readyz fails while relisting, and the relist brings the new Deployment`,
          async () => {
            const relists = await metric("kuberollouttrigger_worker_inventory_relists_total");
            const lists = proxy.requests.filter((r) => r.verb === "list").length;
            const expired = logs.filter((l) => l.msg.startsWith("watch expired (410")).length;
            proxy.holdLists();
            proxy.injectNextWatch({ kind });
            proxy.endWatches();
            const notReady = await waitReady(false, "not ready while relisting");
            assertEquals(notReady.body.checks.inventory_synced, "failing");
            await eventually(
              "the relist reached the proxy",
              () => proxy.requests.filter((r) => r.verb === "list").length > lists || undefined,
            );
            await cluster.createDeployment(
              deploymentManifest(ns, name, [{ image: "ghcr.io/acme/app:dev" }]),
            );
            created.push(name);
            proxy.releaseLists();
            await waitReady(true, "ready after the relist");
            assertEquals(
              await metric("kuberollouttrigger_worker_inventory_relists_total"),
              relists + 1,
            );
            assertEquals(
              logs.filter((l) => l.msg.startsWith("watch expired (410")).length,
              expired + 1,
            );
            assert(
              logs.some((l) => l.msg === "inventory relisted" && l.deployments === created.length),
            );
            assertEquals(await restartApp(), [...created].sort());
          },
        );
      }

      await step(
        "a line that is not JSON is counted and logged without its content, then relisted",
        async () => {
          const relists = await metric("kuberollouttrigger_worker_inventory_relists_total");
          proxy.injectNextWatch({ kind: "line", line: NOT_JSON });
          proxy.endWatches();
          await eventually(
            "counted",
            async () =>
              await metric("kuberollouttrigger_worker_watch_malformed_total") === 1 || undefined,
          );
          const warn = logs.find((l) =>
            l.msg === "malformed answer from the API server; relisting"
          );
          assertEquals(
            warn?.error,
            `watch stream line 1 is not JSON (${NOT_JSON.length} characters)`,
          );
          assert(!logs.some((l) => JSON.stringify(l).includes("watch-secret-canary")));
          await eventually(
            "relisted",
            async () =>
              await metric("kuberollouttrigger_worker_inventory_relists_total") === relists + 1 ||
              undefined,
          );
          await waitReady(true, "ready after the relist");
        },
      );
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      if (failed) {
        console.error("worker log (last 40 lines):");
        for (const l of logs.slice(-40)) console.error(JSON.stringify(l));
      }
      stop.abort();
      await running?.catch(() => {});
      await proxy.close();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
