/**
 * Durable delivery with the real programs: web in dev mode, two clusters
 * (each a worker with its own CLUSTER_NAME and namespace on the test control
 * plane) and `deno task trigger --wait`, which reads the status as the
 * Action does. One cluster's worker is stopped for longer than the live
 * window; three events are published (two for one image); trigger does not
 * report success while it is away; it comes back, catches up, restarts each
 * matching Deployment once, and the events end succeeded. An event older
 * than the returning cluster's catch-up window is reported expired instead.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { runTriggerTask } from "../helpers/trigger_task.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkey } from "../helpers/valkey.ts";
import type { EventStatus } from "../../shared/event_status.ts";
import { CLUSTER_LIVE_MS } from "../../shared/event_status.ts";
import { DEV_DEFAULTS } from "../../tools/dev.ts";
import { mintDevToken } from "../../tools/trigger.ts";

const info = withoutValkey() ? undefined : requireControlPlane("the catch-up tests");

Deno.test({
  name:
    "a cluster away longer than the live window catches up when it returns: no success while it is away, each Deployment restarted once, every event succeeded; past its catch-up window, expired",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    const programs: Program[] = [];
    try {
      const images = ["ghcr.io/acme/app", "ghcr.io/acme/api"];
      const alpha = await cluster.workerNamespace("krt-catch-alpha");
      const beta = await cluster.workerNamespace("krt-catch-beta");
      for (const { ns } of [alpha, beta]) {
        for (const image of images) {
          const name = image.split("/").pop()!;
          await cluster.createDeployment(deploymentManifest(ns, name, [{ image: `${image}:dev` }]));
        }
      }
      const base = { ...DEV_DEFAULTS, VALKEY_ADDR: valkey.addr };
      const web = await startWeb({ ...base, STATUS_REPORT_TIMEOUT: "3s" }, ["--dev-mode"]);
      programs.push(web.program);
      const workerEnv = (name: string, ns: string, extra: Record<string, string> = {}) => ({
        ...base,
        CLUSTER_NAME: name,
        WATCH_NAMESPACES: ns,
        RESTART_DEDUP_WINDOW: "0s",
        ROLLOUT_TIMEOUT: "0s",
        ...extra,
      });
      programs.push((await startWorker(workerEnv("alpha", alpha.ns), alpha.kubeconfig)).program);
      let betaWorker = await startWorker(workerEnv("beta", beta.ns), beta.kubeconfig);
      programs.push(betaWorker.program);
      const generations = async (ns: string) => ({
        app: (await cluster.getDeployment(ns, "app")).metadata.generation,
        api: (await cluster.getDeployment(ns, "api")).metadata.generation,
      });
      const statusOf = async (id: string): Promise<EventStatus> => {
        const res = await fetch(`${web.url}/event/${id}`, {
          headers: { authorization: `Bearer ${await mintDevToken(web.url)}` },
        });
        assertEquals(res.status, 200);
        return await res.json();
      };
      const eventIdOf = (stdout: string) => stdout.match(/"id":"([0-9a-f-]{36})"/)?.[1];

      const before = { alpha: await generations(alpha.ns), beta: await generations(beta.ns) };
      const ids: string[] = [];
      await t.step(
        "beta away longer than the live window: trigger --wait fails, never succeeds",
        async () => {
          await betaWorker.program.stop();
          await new Promise((r) => setTimeout(r, CLUSTER_LIVE_MS + 1000));
          for (
            const image of ["ghcr.io/acme/app:dev", "ghcr.io/acme/app:dev", "ghcr.io/acme/api:dev"]
          ) {
            const run = await runTriggerTask([
              image,
              "--url",
              web.url,
              "--wait",
              "--timeout",
              "30s",
            ]);
            assertEquals(run.code, 1, `${image}: ${run.stdout}${run.stderr}`);
            assertMatch(
              run.stdout,
              /"clusters":\["alpha","beta"\]/,
              "the away cluster is still one it is for",
            );
            assertMatch(run.stdout, /kuberollouttrigger: failed/);
            assertMatch(run.stdout, /not live when the event was published/);
            ids.push(eventIdOf(run.stdout)!);
          }
          for (const id of ids) {
            const status = await statusOf(id);
            assertEquals(status.state, "failed");
            const away = status.clusters.find((c) => c.cluster === "beta")!;
            assertEquals(away.state, "no_report");
            assertEquals(status.clusters.find((c) => c.cluster === "alpha")!.state, "succeeded");
          }
          assertEquals(
            await generations(beta.ns),
            before.beta,
            "nothing restarted in the away cluster",
          );
          const alphaNow = await generations(alpha.ns);
          assertEquals(alphaNow.api, before.alpha.api + 1);
          assert(alphaNow.app > before.alpha.app, "the live cluster restarted at once");
        },
      );

      await t.step(
        "beta returns: it catches up, restarts each Deployment once, every event succeeded",
        async () => {
          betaWorker = await startWorker(workerEnv("beta", beta.ns), beta.kubeconfig);
          programs.push(betaWorker.program);
          const states = await eventually(
            "every event final and succeeded",
            async () => {
              const all = await Promise.all(ids.map(statusOf));
              return all.every((s) => s.state === "succeeded") ? all : undefined;
            },
            60_000,
            250,
          );
          for (const s of states) {
            assertEquals(s.clusters.map((c) => [c.cluster, c.state]), [["alpha", "succeeded"], [
              "beta",
              "succeeded",
            ]]);
          }
          assertEquals(
            await generations(beta.ns),
            { app: before.beta.app + 1, api: before.beta.api + 1 },
            "two events for app, one for api: each Deployment restarted once",
          );
          const handled = betaWorker.program.logs.filter((l) => l.msg === "event handled");
          assertEquals(handled.map((l) => l.event_id), ids, "in the order web accepted them");
        },
      );

      await t.step(
        "away longer than its catch-up window: the event is reported expired and restarts nothing",
        async () => {
          await betaWorker.program.stop();
          const run = await runTriggerTask(["ghcr.io/acme/api:dev", "--url", web.url]);
          assertEquals(run.code, 0, run.stdout + run.stderr);
          const id = eventIdOf(run.stdout)!;
          const beforeExpiry = await generations(beta.ns);
          await new Promise((r) => setTimeout(r, 3000));
          betaWorker = await startWorker(
            workerEnv("beta", beta.ns, { CATCH_UP_WINDOW: "2s" }),
            beta.kubeconfig,
          );
          programs.push(betaWorker.program);
          const status = await eventually(
            "beta's expired report",
            async () => {
              const s = await statusOf(id);
              return s.clusters.find((c) => c.cluster === "beta")?.state === "expired"
                ? s
                : undefined;
            },
            30_000,
            250,
          );
          assertEquals(status.state, "failed");
          assertMatch(
            status.clusters.find((c) => c.cluster === "beta")!.reason!,
            /CATCH_UP_WINDOW/,
          );
          assertEquals(await generations(beta.ns), beforeExpiry);
          const line = await betaWorker.program.waitForLog((l) => l.msg === "event expired");
          assertEquals(line.event_id, id);
        },
      );
    } finally {
      for (const p of programs) await p.stop();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
