/**
 * How the worker fills its inventory at start-up, against the real
 * kube-apiserver through the loopback proxy of tests/helpers/stall_proxy.ts:
 * by the streaming list (one watch request, no list request) where the server
 * offers it; by paged lists where it answers the streaming list with the
 * refusal of a server whose WatchList feature gate is off; and an event
 * published while the first sync is held back is accepted (a subscriber is
 * there), held, and restarts its Deployment once the inventory is synced.
 * The worker runs in-process through runWorker, as main.ts calls it.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { waitForAccess } from "../helpers/capabilities.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { type StallProxy, startStallProxy } from "../helpers/stall_proxy.ts";
import { appendEvent, startValkey, type TestValkey } from "../helpers/valkey.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { parseCommandLine } from "../../config/command_line.ts";
import { createLogger } from "../../lib/log.ts";
import { runWorker } from "../../worker/worker.ts";

const info = withoutValkey() ? undefined : requireControlPlane("the start-up sync tests");
const RESTARTED_AT = "kubectl.kubernetes.io/restartedAt";

type Line = Record<string, unknown> & { msg: string };

interface Running {
  logs: Line[];
  healthUrl: () => string;
  stop(): Promise<void>;
}

/** runWorker on `ns` with its kubeconfig pointed at the proxy. */
async function startWorkerThrough(
  proxy: StallProxy,
  kubeconfig: string,
  ns: string,
  valkey: TestValkey,
  channel: string,
): Promise<Running> {
  const doc = JSON.parse(await Deno.readTextFile(kubeconfig));
  doc.clusters[0].cluster.server = proxy.url;
  const proxied = `${kubeconfig}.${channel}`;
  await Deno.writeTextFile(proxied, JSON.stringify(doc), { mode: 0o600 });
  const parsed = parseCommandLine("worker", [], (name) =>
    ({
      KUBECONFIG: proxied,
      WATCH_NAMESPACES: ns,
      VALKEY_ADDR: valkey.addr,
      VALKEY_CHANNEL: channel,
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      HEALTH_LISTEN_ADDR: "127.0.0.1:0",
      RESTART_DEDUP_WINDOW: "0s",
      CLUSTER_NAME: "startup",
    } as Record<string, string>)[name]);
  assert(parsed.kind === "config");
  const logs: Line[] = [];
  let healthUrl = "";
  const stop = new AbortController();
  const running = runWorker(parsed.config, {
    logger: createLogger({
      level: "debug",
      fields: { mode: "worker" },
      write: (line) => logs.push(JSON.parse(line)),
    }),
    signal: stop.signal,
    onListen: (addr) => healthUrl = `http://${addr.hostname}:${addr.port}`,
  });
  return {
    logs,
    healthUrl: () => healthUrl,
    async stop() {
      stop.abort();
      await running.catch(() => {});
    },
  };
}

async function readyz(url: string): Promise<number> {
  const res = await fetch(`${url}/readyz`);
  await res.body?.cancel();
  return res.status;
}

Deno.test({
  name:
    "the worker's start-up sync: streaming list, paged fallback, and an event held until synced",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-startup");
      for (const verb of ["list", "watch", "get", "patch"]) {
        await waitForAccess(cluster, ns, verb, true);
      }
      for (const name of ["one", "two"]) {
        await cluster.createDeployment(
          deploymentManifest(ns, name, [{ image: `ghcr.io/acme/${name}:dev` }]),
        );
      }

      await t.step("the real API server streams the list: one watch request, no list", async () => {
        const proxy = startStallProxy({ server: info!.server, caPem: info!.caPem });
        const worker = await startWorkerThrough(proxy, kubeconfig, ns, valkey, "krt-stream");
        try {
          const synced = await eventually(
            "synced",
            () => worker.logs.find((l) => l.msg === "inventory synced"),
            20_000,
          );
          assertEquals([synced.deployments, synced.streamed], [2, true]);
          const deployments = proxy.requests.filter((r) => r.verb !== "other");
          assertEquals(deployments.length, 1, "the stream is both the list and the watch");
          assertEquals(deployments[0].url.searchParams.get("sendInitialEvents"), "true");
          assertEquals(deployments[0].url.searchParams.get("resourceVersionMatch"), "NotOlderThan");
          await eventually("ready", async () => await readyz(worker.healthUrl()) === 200, 10_000);
        } finally {
          await worker.stop();
          await proxy.close();
        }
      });

      await t.step(
        "a server that refuses the streaming list (422) is listed in pages",
        async () => {
          const proxy = startStallProxy({ server: info!.server, caPem: info!.caPem });
          proxy.refuseStreamingLists();
          const worker = await startWorkerThrough(proxy, kubeconfig, ns, valkey, "krt-paged");
          try {
            const synced = await eventually(
              "synced",
              () => worker.logs.find((l) => l.msg === "inventory synced"),
              20_000,
            );
            assertEquals([synced.deployments, synced.streamed], [2, false]);
            await eventually("ready", async () => await readyz(worker.healthUrl()) === 200, 10_000);
            const streamed = (r: { url: URL }) => r.url.searchParams.get("watch") === "1";
            const lists = proxy.requests.filter((r) => r.verb === "list");
            assertEquals(lists.map(streamed), [true, false], "one refused stream, one paged list");
            assert(proxy.requests.some((r) => r.verb === "watch"), "then a plain watch");
            assert(
              worker.logs.some((l) =>
                l.msg === "the API server does not offer the streaming list; listing in pages"
              ),
            );
          } finally {
            await worker.stop();
            await proxy.close();
          }
        },
      );

      await t.step(
        "an event published during the initial sync is accepted, held, and restarts its Deployment once synced",
        async () => {
          const proxy = startStallProxy({ server: info!.server, caPem: info!.caPem });
          proxy.holdLists();
          const channel = "krt-held";
          const worker = await startWorkerThrough(proxy, kubeconfig, ns, valkey, channel);
          try {
            await eventually(
              "subscribed",
              () => worker.logs.find((l) => l.msg === "reading the event stream"),
              20_000,
            );
            await eventually(
              "the streaming list is held",
              () => proxy.requests.find((r) => r.verb === "list"),
              10_000,
            );
            assertEquals(await readyz(worker.healthUrl()), 503, "not ready until synced");
            const before = (await cluster.getDeployment(ns, "one")).spec.template.metadata
              ?.annotations?.[RESTARTED_AT];
            const id = crypto.randomUUID();
            await appendEvent(
              valkey,
              JSON.stringify({
                id,
                time: new Date().toISOString(),
                image: "ghcr.io/acme/one",
                tags: ["dev"],
              }),
            );
            await eventually(
              "held",
              () => worker.logs.find((l) => l.msg === "event held until the inventory has settled"),
              10_000,
            );
            assert(!worker.logs.some((l) => l.msg === "event handled"), "not handled yet");
            proxy.releaseLists();
            const summary = await eventually(
              "event handled",
              () => worker.logs.find((l) => l.msg === "event handled" && l.event_id === id),
              20_000,
            );
            assertEquals(summary.restarted, [`${ns}/one`]);
            const after = (await cluster.getDeployment(ns, "one")).spec.template.metadata
              ?.annotations?.[RESTARTED_AT];
            assert(after && after !== before, "the Deployment was restarted");
            const order = worker.logs.map((l) => l.msg);
            assert(order.indexOf("inventory synced") < order.indexOf("event handled"));
          } finally {
            await worker.stop();
            await proxy.close();
          }
        },
      );
    } finally {
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
