/**
 * Rollout feedback (SPEC §12) from the worker's side, against the real
 * servers: real Valkey, the shared cluster with its real controllers and test
 * node, workers run in-process through runWorker, events published exactly as
 * web publishes them (web/publisher.ts writes the binding), and each cluster
 * report read back with web's parser.
 */

// Assertions index into API objects.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireRolloutCluster } from "../helpers/control_plane.ts";
import {
  makePodsReady,
  outcomes,
  startTestWorker,
  statusClient,
  type TestWorker,
} from "../helpers/feedback.ts";
import { getDeployment, rolloutComplete } from "../helpers/rollout.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { appendEvent, startValkey } from "../helpers/valkey.ts";
import { CLUSTERS_KEY, statusKey } from "../../shared/event_status.ts";

const rollout = requireRolloutCluster("the rollout feedback tests");
const options = {
  ignore: rollout === undefined || withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
};
const DIGEST = `sha256:${"d".repeat(64)}`;
const final = (r: { state: string }) => r.state !== "in_progress";

Deno.test({
  name:
    "feedback: two replicas of one cluster handle each event once and report it: succeeded with every restart complete, skips with reasons, a stalled rollout failed, no_match, a Kubernetes Event per restart and a heartbeat",
  ...options,
  async fn(t) {
    const cluster = openCluster(rollout!.info);
    const valkey = await startValkey();
    const status = statusClient(valkey, "krt-feedback");
    const workers: TestWorker[] = [];
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-feedback");
      await cluster.createDeployment(
        deploymentManifest(ns, "api", [{ image: "ghcr.io/acme/app:dev" }], { replicas: 2 }),
      );
      await cluster.createDeployment(
        deploymentManifest(ns, "web", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      await cluster.createDeployment(
        deploymentManifest(ns, "held", [{ image: "ghcr.io/acme/app:dev" }], { paused: true }),
      );
      await cluster.createDeployment(
        deploymentManifest(ns, "pinned", [{ image: `ghcr.io/acme/app@${DIGEST}` }]),
      );
      await cluster.createDeployment(
        deploymentManifest(ns, "stuck", [{ image: "ghcr.io/acme/stuck:dev" }], {
          unready: true,
          progressDeadlineSeconds: 3,
        }),
      );
      for (let i = 0; i < 2; i++) {
        workers.push(
          await startTestWorker({
            KUBECONFIG: kubeconfig,
            WATCH_NAMESPACES: ns,
            VALKEY_ADDR: valkey.addr,
            VALKEY_CHANNEL: "krt-feedback",
            CLUSTER_NAME: "alpha",
          }),
        );
      }

      await t.step("the heartbeat names the cluster once in CLUSTERS_KEY", async () => {
        const members = await eventually("the heartbeat", async () => {
          const m = await status.valkey.call("ZRANGE", CLUSTERS_KEY, 0, -1, "WITHSCORES");
          return Array.isArray(m) && m.length > 0 ? m : undefined;
        }, 30_000);
        assertEquals(members[0], "alpha");
        assertEquals(members.length, 2, "two replicas are one member");
        assert(Math.abs(Number(members[1]) - Date.now()) < 60_000, "scored with the time");
      });

      let appEvent = "";
      await t.step("an all-good event ends succeeded, every restart complete", async () => {
        const published = await status.publish("ghcr.io/acme/app", ["dev"]);
        appEvent = published.id;
        assertEquals(published.subscribers, 0, "workers read the stream, not the channel");
        assertEquals(published.clusters, ["alpha"]);
        const report = await status.waitForReport(published.id, "alpha", final, 90_000);
        assertEquals(report.state, "succeeded");
        assertEquals(outcomes(report), [
          "api: restarted complete",
          "held: skipped/paused",
          "pinned: skipped/digest_pinned",
          "web: restarted complete",
        ]);
        assertEquals(report.matched, 3);
        assertEquals([report.counts.restarted, report.counts.complete, report.counts.skipped], [
          2,
          2,
          2,
        ]);
        const api = report.deployments.find((d) => d.name === "api")!;
        assertEquals(api.rollout, {
          state: "complete",
          replicas: 2,
          updated: 2,
          ready: 2,
          available: 2,
        });
        const d = await getDeployment(cluster.admin, ns, "api");
        assert(rolloutComplete(d), "the cluster agrees: the rollout is complete");
      });

      await t.step("exactly one replica handled it: one restart each, one summary", () => {
        const handled = workers.flatMap((w) =>
          w.logs.filter((l) => l.msg === "event handled" && l.event_id === appEvent)
        );
        assertEquals(handled.length, 1);
        assertEquals(handled[0].restarted.sort(), [`${ns}/api`, `${ns}/web`]);
        // The cluster's consumer group gave the event to one replica only.
        const other = workers.flatMap((w) =>
          w.logs.filter((l) =>
            l.msg === "event handled by another replica of this cluster" &&
            l.event_id === appEvent
          )
        );
        assertEquals(other, []);
      });

      await t.step("each restart left a RolloutTriggered Event naming the event id", async () => {
        const list = (await cluster.admin.request("GET", `/api/v1/namespaces/${ns}/events`))
          .json as any;
        const ours = list.items.filter((e: any) => e.reason === "RolloutTriggered");
        assertEquals(ours.map((e: any) => e.involvedObject.name).sort(), ["api", "web"]);
        for (const e of ours) {
          const d = await getDeployment(cluster.admin, ns, e.involvedObject.name);
          assertEquals(e.involvedObject.kind, "Deployment");
          assertEquals(e.involvedObject.apiVersion, "apps/v1");
          assertEquals(e.involvedObject.uid, d.metadata.uid);
          assertEquals(e.type, "Normal");
          assertEquals(e.source.component, "kuberollouttrigger");
          assertEquals(e.count, 1);
          assertMatch(e.message, new RegExp(`event ${appEvent}: ghcr\\.io/acme/app:dev$`));
        }
      });

      await t.step(
        "an unready Deployment's rollout fails with ProgressDeadlineExceeded",
        async () => {
          const { id } = await status.publish("ghcr.io/acme/stuck", ["dev"]);
          const report = await status.waitForReport(id, "alpha", final, 90_000);
          assertEquals(report.state, "failed");
          assertEquals(outcomes(report), ["stuck: restarted failed/ProgressDeadlineExceeded"]);
          assertEquals(report.counts.rollout_failed, 1);
          const line = workers.flatMap((w) => w.logs).find((l) =>
            l.msg === "rollout finished" && l.event_id === id
          );
          assertEquals(
            [line?.namespace, line?.deployment, line?.state, line?.reason],
            [ns, "stuck", "failed", "ProgressDeadlineExceeded"],
          );
        },
      );

      await t.step("an image nothing uses ends no_match", async () => {
        const { id } = await status.publish("ghcr.io/acme/nothing", ["dev"]);
        const report = await status.waitForReport(id, "alpha", final, 30_000);
        assertEquals(report.state, "no_match");
        assertEquals([report.matched, report.deployments.length], [0, 0]);
      });

      await t.step("metrics: rollouts by final state, no label per Deployment", async () => {
        const all = await Promise.all(workers.map(async (w) => ({
          complete: await w.metric('kuberollouttrigger_worker_rollouts_total{state="complete"}'),
          failed: await w.metric('kuberollouttrigger_worker_rollouts_total{state="failed"}'),
          timedOut: await w.metric('kuberollouttrigger_worker_rollouts_total{state="timed_out"}'),
          events: await w.metric('kuberollouttrigger_worker_kube_events_total{result="created"}'),
        })));
        const sum = (k: keyof typeof all[0]) => all.reduce((n, m) => n + m[k], 0);
        assertEquals([sum("complete"), sum("failed"), sum("timedOut"), sum("events")], [
          2,
          1,
          0,
          3,
        ]);
        const text = await (await fetch(`${workers[0].healthUrl}/metrics`)).text();
        const feedbackSeries = text.split("\n").filter((l) =>
          /^kuberollouttrigger_worker_(rollouts|report_writes|kube_events|restarts)_total/.test(l)
        );
        assert(feedbackSeries.length >= 13, "every label exported");
        assert(
          !feedbackSeries.some((l) => /api|web|stuck|krt-/.test(l)),
          "no label per Deployment",
        );
      });

      await t.step(
        "an event without web's binding is handled, but no record is created for it",
        async () => {
          const id = crypto.randomUUID();
          const message = {
            id,
            time: new Date().toISOString(),
            image: "ghcr.io/acme/app",
            tags: ["dev"],
          };
          await appendEvent(valkey, JSON.stringify(message));
          await eventually(
            "the worker to find no record",
            () =>
              workers.flatMap((w) => w.logs).find((l) =>
                l.msg === "no status record for the event; its report is not written" &&
                l.event_id === id
              ),
            30_000,
          );
          assertEquals(await status.valkey.call("EXISTS", statusKey(id)), 0);
        },
      );
    } finally {
      for (const w of workers) await w.stop();
      status.close();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name:
    "feedback: a forbidden patch fails with the API's reason, and a rollout not complete within ROLLOUT_TIMEOUT is timed_out",
  ...options,
  async fn() {
    const cluster = openCluster(rollout!.info);
    const valkey = await startValkey();
    const status = statusClient(valkey, "krt-feedback-2");
    let worker: TestWorker | undefined;
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-slow");
      const locked = await cluster.namespace("krt-locked");
      await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", {
        namespace: locked,
        edit: (doc) => {
          if (doc.kind === "Role") {
            doc.rules[0].verbs = doc.rules[0].verbs.filter((v: string) => v !== "patch");
          }
        },
      });
      await cluster.createDeployment(
        deploymentManifest(ns, "slow", [{ image: "ghcr.io/acme/app:dev" }], { unready: true }),
      );
      await cluster.createDeployment(
        deploymentManifest(locked, "locked", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      worker = await startTestWorker({
        KUBECONFIG: kubeconfig,
        WATCH_NAMESPACES: `${ns},${locked}`,
        VALKEY_ADDR: valkey.addr,
        VALKEY_CHANNEL: "krt-feedback-2",
        CLUSTER_NAME: "beta",
        ROLLOUT_TIMEOUT: "4s",
      });
      const { id } = await status.publish("ghcr.io/acme/app", ["dev"]);
      const report = await status.waitForReport(id, "beta", final, 60_000);
      assertEquals(report.state, "failed");
      const [locked_, slow] = [...report.deployments].sort((a, b) => a.name.localeCompare(b.name));
      assertEquals([locked_.name, locked_.result], ["locked", "failed"]);
      assertMatch(locked_.reason!, /^403 Forbidden: deployments\.apps "locked" is forbidden: /);
      assertEquals([slow.name, slow.result, slow.rollout?.state], [
        "slow",
        "restarted",
        "timed_out",
      ]);
      assertEquals(slow.rollout?.reason, "not complete within ROLLOUT_TIMEOUT (4s)");
      assertEquals(
        await worker.metric('kuberollouttrigger_worker_rollouts_total{state="timed_out"}'),
        1,
      );
      assertEquals(
        await worker.metric('kuberollouttrigger_worker_restarts_total{result="failed"}'),
        1,
      );
    } finally {
      await worker?.stop();
      status.close();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});

/** Waits until the Deployment's rollout completes, making its pods Ready as they come. */
async function completeRollout(cluster: ReturnType<typeof openCluster>, ns: string, name: string) {
  await eventually(`${ns}/${name} to complete once its pods are ready`, async () => {
    await makePodsReady(cluster.admin, ns);
    return rolloutComplete(await getDeployment(cluster.admin, ns, name)) ? true : undefined;
  }, 90_000);
}

Deno.test({
  name:
    "feedback: a worker restarted mid-rollout resumes tracking and reports complete; with Valkey down while reporting the report lands once it is back",
  ...options,
  async fn(t) {
    const cluster = openCluster(rollout!.info);
    // Persistence on, so the record survives the server's stop (as a production Valkey's would).
    const dir = await Deno.makeTempDir({ prefix: "krt-valkey-" });
    const valkey = await startValkey([
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
      "--dir",
      dir,
    ]);
    const status = statusClient(valkey, "krt-feedback-3");
    let worker: TestWorker | undefined;
    const env = (kubeconfig: string, ns: string) => ({
      KUBECONFIG: kubeconfig,
      WATCH_NAMESPACES: ns,
      VALKEY_ADDR: valkey.addr,
      VALKEY_CHANNEL: "krt-feedback-3",
      CLUSTER_NAME: "gamma",
    });
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-resume");
      await cluster.createDeployment(
        deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }], { unready: true }),
      );
      worker = await startTestWorker(env(kubeconfig, ns));

      await t.step(
        "restarted mid-rollout: the next worker resumes and reports complete",
        async () => {
          const { id } = await status.publish("ghcr.io/acme/app", ["dev"]);
          const first = await status.waitForReport(id, "gamma", () => true, 30_000);
          assertEquals(outcomes(first), ["app: restarted progressing"]);
          await worker!.stop();
          worker = undefined;
          await completeRollout(cluster, ns, "app");
          worker = await startTestWorker(env(kubeconfig, ns));
          const report = await status.waitForReport(id, "gamma", final, 60_000);
          assertEquals(report.state, "succeeded");
          assertEquals(outcomes(report), ["app: restarted complete"]);
          assert(
            worker.logs.some((l) => l.msg === "resuming rollout tracking" && l.event_id === id),
            "the new worker says it resumed the event",
          );
        },
      );

      await t.step("Valkey down while reporting: the report lands when it is back", async () => {
        // Unready again, so the next rollout waits for the test to let it finish.
        await cluster.admin.request(
          "PATCH",
          `/apis/apps/v1/namespaces/${ns}/deployments/app`,
          { spec: { template: { metadata: { labels: { "krt-test/ready": "false" } } } } },
          "application/merge-patch+json",
        );
        await eventually("the unready template to roll out", async () => {
          const d = await getDeployment(cluster.admin, ns, "app");
          return d.status?.observedGeneration === d.metadata.generation ? true : undefined;
        }, 30_000);
        const { id } = await status.publish("ghcr.io/acme/app", ["dev"]);
        const first = await status.waitForReport(id, "gamma", () => true, 30_000);
        assertEquals(first.state, "in_progress");
        await valkey.stop();
        await completeRollout(cluster, ns, "app");
        await eventually(
          "a failed report write",
          () =>
            worker!.logs.find((l) =>
              l.msg === "writing the cluster report failed; retrying" && l.event_id === id
            ),
          30_000,
        );
        await valkey.start();
        const report = await status.waitForReport(id, "gamma", final, 60_000);
        assertEquals(report.state, "succeeded");
        assertEquals(outcomes(report), ["app: restarted complete"]);
      });
    } finally {
      await worker?.stop();
      status.close();
      await valkey.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await cluster.cleanup();
    }
  },
});
