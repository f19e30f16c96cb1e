/**
 * Faults while the real processes run: Valkey killed and restarted under a
 * steady stream of events, kube-apiserver restarted under the worker, a
 * worker killed mid-event. Every 202 must lead to exactly one restart; no
 * request during an outage may get 202; nothing may restart twice for one
 * event. All traffic stays on loopback; every loop is bounded in time.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { assertEachRestarted, assertRestartedForEvery } from "../helpers/accepted_restarts.ts";
import { type Cluster, deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import {
  type ControlPlane,
  requireControlPlane,
  startControlPlane,
} from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { appendEvent, startValkey, type TestValkey } from "../helpers/valkey.ts";
import { statusClient } from "../helpers/feedback.ts";
import { statusKey } from "../../shared/event_status.ts";

const CHANNEL = "krt-faults";
const info = withoutValkey() ? undefined : requireControlPlane("the fault tests");
const options = { ignore: info === undefined, sanitizeOps: false, sanitizeResources: false };

function env(valkey: TestValkey, extra: Record<string, string> = {}) {
  return {
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    ...extra,
  };
}

async function scopedWorkerSetup(cluster: Cluster, prefix: string, names: string[]) {
  const { ns, kubeconfig } = await cluster.workerNamespace(prefix);
  for (const name of names) {
    await cluster.createDeployment(
      deploymentManifest(ns, name, [{ image: "ghcr.io/acme/app:dev" }]),
    );
  }
  return { ns, kubeconfig };
}

Deno.test({
  name:
    "Valkey (persisted) killed and restarted during 20 events/s for 30 s: every 202 restarts once, the outage gets 503",
  ...options,
  async fn() {
    const cluster = openCluster(info!);
    const issuer = await startIssuer();
    // A 202 is as durable as Valkey: persisted before it answers (AOF, fsync on every write), as
    // docs/operations.md asks of production. Without persistence a kill loses what no worker
    // had read (worker_test.ts proves the worker reads again after such a restart).
    const dataDir = await Deno.makeTempDir({ prefix: "krt-vfault-" });
    const valkey = await startValkey([
      "--dir",
      dataDir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
    ]);
    const programs: Program[] = [];
    try {
      const { ns, kubeconfig } = await scopedWorkerSetup(cluster, "krt-vfault", ["app"]);
      const before = await cluster.getDeployment(ns, "app");
      const web = await startWeb(env(valkey, {
        GITHUB_OIDC_ISSUER: issuer.url,
        GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
        GITHUB_ALLOWED_ORG: "acme",
        VALKEY_TIMEOUT: "1s",
      }));
      programs.push(web.program);
      const worker = await startWorker(
        env(valkey, { WATCH_NAMESPACES: ns, RESTART_DEDUP_WINDOW: "0s" }),
        kubeconfig,
      );
      programs.push(worker.program);

      const tokens = await Promise.all(Array.from({ length: 600 }, () => issuer.sign()));
      const results: { sentAt: number; status: number; id?: string }[] = [];
      const started = Date.now();
      let killedAt = Infinity;
      let restartedAt = Infinity;
      const outage = (async () => {
        await new Promise((r) => setTimeout(r, 10_000));
        killedAt = Date.now();
        await valkey.stop();
        await new Promise((r) => setTimeout(r, 5_000));
        await valkey.start();
        restartedAt = Date.now();
      })();
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < 600; i++) {
        const due = started + i * 50;
        await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
        const sentAt = Date.now();
        inFlight.push((async () => {
          const res = await fetch(`${web.url}/event`, {
            method: "POST",
            headers: { authorization: `Bearer ${tokens[i]}`, "content-type": "application/json" },
            body: '{"image":"ghcr.io/acme/app:dev"}',
          });
          const body = await res.json();
          results.push({ sentAt, status: res.status, id: body.id });
        })());
      }
      await Promise.all(inFlight);
      await outage;

      const accepted = results.filter((r) => r.status === 202);
      const refused = results.filter((r) => r.status === 503);
      const duringOutage = results.filter((r) => r.sentAt >= killedAt && r.sentAt < restartedAt);
      console.error(
        `valkey fault: ${results.length} requests, ${accepted.length} x 202, ${refused.length} x 503, ` +
          `${duringOutage.length} sent during the 5 s outage`,
      );
      assertEquals(accepted.length + refused.length, results.length, "only 202 and 503");
      assert(
        duringOutage.length > 0 && duringOutage.every((r) => r.status === 503),
        "202 during the outage",
      );
      assert(
        accepted.some((r) => r.sentAt > restartedAt),
        "web and worker recovered without a restart",
      );

      const summaries = await eventually("a summary for every accepted event", () => {
        const lines = worker.program.logs.filter((l) => l.msg === "event handled");
        const ids = new Set(lines.map((l) => l.event_id));
        return accepted.every((r) => ids.has(r.id)) ? lines : undefined;
      }, 30_000).catch((err) => {
        const ids = new Set(worker.program.logs.map((l) => l.event_id));
        const lost = accepted.filter((r) => !ids.has(r.id)).map((r) => [
          r.sentAt - killedAt,
          r.sentAt - restartedAt,
        ]);
        throw new Error(
          `${err.message}; unhandled, ms after the kill and the restart: ${JSON.stringify(lost)}`,
        );
      });
      assertEachRestarted(summaries, accepted);
      const after = await cluster.getDeployment(ns, "app");
      assertRestartedForEvery(
        accepted,
        after.metadata.generation - before.metadata.generation,
        after.spec.template.metadata?.annotations?.["kubectl.kubernetes.io/restartedAt"],
      );
    } finally {
      for (const p of programs) await p.stop();
      await valkey.stop();
      await Deno.remove(dataDir, { recursive: true });
      await issuer.stop();
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name:
    "a replica SIGKILLed mid-event (some Deployments patched, some not, nothing acknowledged): the other replica takes the event over, each Deployment restarts exactly once, one report",
  ...options,
  async fn() {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    const status = statusClient(valkey, CHANNEL);
    const programs: Program[] = [];
    try {
      const names = Array.from({ length: 30 }, (_, i) => `app-${i}`);
      const { ns, kubeconfig } = await scopedWorkerSetup(cluster, "krt-crash", names);
      const generation = async () =>
        Object.fromEntries(
          await Promise.all(
            names.map(async (n) => [n, (await cluster.getDeployment(ns, n)).metadata.generation]),
          ),
        );
      const before = await generation();
      const workerEnv = env(valkey, {
        WATCH_NAMESPACES: ns,
        RESTART_DEDUP_WINDOW: "0s",
        CLUSTER_NAME: "crash",
        ROLLOUT_TIMEOUT: "0s",
      });
      // Only the first replica reads while the event is appended: it is the one to die.
      const first = await startWorker(workerEnv, kubeconfig);
      programs.push(first.program);
      const published = await status.publish("ghcr.io/acme/app", ["dev"]);
      assertEquals(published.clusters, ["crash"]);
      await first.program.waitForLog((l) => l.msg === "restarted deployment");
      first.program.child.kill("SIGKILL");
      await first.program.status;
      const patchedByFirst = first.program.logs.filter((l) => l.msg === "restarted deployment")
        .length;

      // Nothing is appended again: the event waits in the dead replica's pending list.
      const second = await startWorker(workerEnv, kubeconfig);
      programs.push(second.program);
      const summary = await second.program.waitForLog(
        (l) => l.msg === "event handled" && l.event_id === published.id,
        60_000,
      );
      await second.program.waitForLog((l) => l.msg.startsWith("took over events"), 1000);
      const after = await generation();
      const restarts = names.map((n) => after[n] - before[n]);
      console.error(
        `worker crash: the killed replica patched ${patchedByFirst} of ${names.length} before ` +
          `the kill; the other took the event over and restarted the rest`,
      );
      assertEquals(restarts, names.map(() => 1), "each Deployment restarted exactly once");
      assertEquals((summary.restarted as string[]).length, names.length, "all reported restarted");
      assertEquals(summary.failed, []);
      const report = await status.waitForReport(
        published.id,
        "crash",
        (r) => r.state !== "in_progress",
      );
      assertEquals(report.state, "succeeded");
      assertEquals(report.counts.restarted, names.length);
      const fields = await status.valkey.call("HKEYS", statusKey(published.id)) as string[];
      assertEquals(fields.filter((f) => f.startsWith("cluster:")), ["cluster:crash"]);
      const events = (await cluster.admin.request("GET", `/api/v1/namespaces/${ns}/events`))
        .json as { items: { reason: string; involvedObject: { name: string } }[] };
      const recorded = events.items.filter((e) => e.reason === "RolloutTriggered")
        .map((e) => e.involvedObject.name);
      // The dead replica may have died between a patch and its Event; none is ever recorded twice.
      assertEquals(recorded.length, new Set(recorded).size, "a restart recorded twice");
    } finally {
      for (const p of programs) await p.stop();
      status.close();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});

const assets = Deno.env.get("KRT_TEST_CONTROL_PLANE_ASSETS");

Deno.test({
  name:
    "kube-apiserver restarted under the worker: the watch resumes and the next event is handled",
  ...options,
  ignore: options.ignore || assets === undefined,
  async fn() {
    let plane: ControlPlane | undefined;
    const valkey = await startValkey();
    let program: Program | undefined;
    try {
      plane = await startControlPlane({ assetsDir: assets! });
      const cluster = openCluster(plane);
      try {
        const { ns, kubeconfig } = await scopedWorkerSetup(cluster, "krt-apifault", ["before"]);
        program = (await startWorker(
          env(valkey, { WATCH_NAMESPACES: ns, RESTART_DEDUP_WINDOW: "0s" }),
          kubeconfig,
        )).program;
        await plane.restartApiServer();
        // Created after the restart: only a resumed watch can put it in the inventory.
        await cluster.createDeployment(
          deploymentManifest(ns, "after", [{ image: "ghcr.io/acme/app:dev" }]),
        );
        const restarted = await eventually("an event after recovery restarts both", async () => {
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
          const summary = await program!.waitForLog((l) =>
            l.msg === "event handled" && l.event_id === id
          );
          const names = (summary.restarted as string[]).sort();
          return names.length === 2 ? names : undefined;
        }, 30_000);
        assertEquals(restarted, [`${ns}/after`, `${ns}/before`]);
        assert(
          program.logs.some((l) => l.msg === "inventory list/watch failed; retrying"),
          "the outage was seen and logged",
        );
      } finally {
        await cluster.cleanup();
      }
    } finally {
      await program?.stop();
      await valkey.stop();
      await plane?.stop();
    }
  },
});
