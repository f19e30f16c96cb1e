/**
 * Rollouts through the real controllers of the shared test cluster
 * (kube-controller-manager plus the test node of tests/helpers/test_node.ts):
 * `kubectl rollout restart` from the same release ends in a complete rollout,
 * pods that never become ready end in ProgressDeadlineExceeded, and the
 * worker's restart is the same change as kubectl's.
 */

// Assertions index into API objects.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireRolloutCluster } from "../helpers/control_plane.ts";
import { type Program, startWorker } from "../helpers/program.ts";
import { getDeployment, kubectl, replicaSetsOf, waitForRollout } from "../helpers/rollout.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { appendEvent, startValkey } from "../helpers/valkey.ts";

const RESTARTED_AT = "kubectl.kubernetes.io/restartedAt";
const REVISION = "deployment.kubernetes.io/revision";
const rollout = requireRolloutCluster("the rollout tests");
const options = { ignore: rollout === undefined, sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    "rollout: `kubectl rollout restart` ends in a complete rollout with one new ReplicaSet, through the real controllers",
  ...options,
  async fn() {
    const { info, kubectl: kubectlPath } = rollout!;
    const cluster = openCluster(info);
    try {
      const ns = await cluster.namespace("krt-rollout");
      await cluster.createDeployment(
        deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }], { replicas: 2 }),
      );
      const first = await waitForRollout(cluster.admin, ns, "app");
      const [original] = await replicaSetsOf(cluster.admin, ns, first);
      assertEquals((await replicaSetsOf(cluster.admin, ns, first)).length, 1);

      const out = await kubectl(kubectlPath, info.adminKubeconfigPath, [
        "--namespace",
        ns,
        "rollout",
        "restart",
        "deployment/app",
      ]);
      assertMatch(out, /deployment\.apps\/app restarted/);

      const done = await waitForRollout(cluster.admin, ns, "app");
      assertEquals(done.metadata.generation, first.metadata.generation + 1);
      assertEquals(done.status.observedGeneration, done.metadata.generation);
      assertEquals(
        [done.status.updatedReplicas, done.status.availableReplicas, done.status.replicas],
        [2, 2, 2],
      );
      const sets = await replicaSetsOf(cluster.admin, ns, done);
      assertEquals(sets.length, 2, "the original and exactly one new ReplicaSet");
      const [old, created] = sets;
      assertEquals(old.metadata.uid, original.metadata.uid);
      assertEquals([old.spec.replicas, old.status.replicas ?? 0], [0, 0]);
      assertEquals([created.spec.replicas, created.status.availableReplicas], [2, 2]);
      assertEquals(created.metadata.annotations[REVISION], "2");
      assertEquals(
        created.spec.template.metadata.annotations[RESTARTED_AT],
        done.spec.template.metadata.annotations[RESTARTED_AT],
      );
      // The old pods are gone, not left Terminating: the test node confirmed their deletion.
      const hash = created.metadata.labels["pod-template-hash"];
      await eventually("only the new ReplicaSet's pods to remain", async () => {
        const pods = (await cluster.admin.request("GET", `/api/v1/namespaces/${ns}/pods`))
          .json as any;
        const hashes = pods.items.map((p: any) => p.metadata.labels["pod-template-hash"]);
        return JSON.stringify(hashes) === JSON.stringify([hash, hash]) ? true : undefined;
      }, 30_000);
      // kubectl's own view agrees (it exits non-zero on a stalled or unfinished rollout).
      const status = await kubectl(kubectlPath, info.adminKubeconfigPath, [
        "--namespace",
        ns,
        "rollout",
        "status",
        "deployment/app",
        "--timeout=60s",
      ]);
      assertMatch(status, /successfully rolled out/);
    } finally {
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name:
    "rollout: a Deployment whose pods never become ready reports Progressing=False ProgressDeadlineExceeded",
  ...options,
  async fn() {
    const cluster = openCluster(rollout!.info);
    try {
      const ns = await cluster.namespace("krt-stuck");
      await cluster.createDeployment(
        deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }], {
          replicas: 2,
          unready: true,
          progressDeadlineSeconds: 3,
        }),
      );
      const stuck = await eventually("Progressing=False on the unready Deployment", async () => {
        const d = await getDeployment(cluster.admin, ns, "app");
        const progressing = d.status?.conditions?.find((c: any) => c.type === "Progressing");
        return progressing?.status === "False" ? { d, progressing } : undefined;
      }, 60_000);
      assertEquals(stuck.progressing.reason, "ProgressDeadlineExceeded");
      // The pods run (the test node reported them) but are not ready.
      assertEquals(stuck.d.status.replicas, 2);
      assertEquals(stuck.d.status.availableReplicas ?? 0, 0);
      assertEquals(stuck.d.status.unavailableReplicas, 2);
      const pods = (await cluster.admin.request("GET", `/api/v1/namespaces/${ns}/pods`))
        .json as any;
      assertEquals(pods.items.map((p: any) => p.status.phase), ["Running", "Running"]);
    } finally {
      await cluster.cleanup();
    }
  },
});

/** Every leaf that differs between two JSON values, as `path: before -> after`. */
function diff(before: unknown, after: unknown, path = ""): Record<string, [unknown, unknown]> {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null;
  // An added or removed object shows as its leaves, so an added annotation
  // reads the same whether or not the annotations map existed before.
  if (isObject(before) && after === undefined) after = {};
  if (isObject(after) && before === undefined) before = {};
  if (isObject(before) && isObject(after)) {
    const out: Record<string, [unknown, unknown]> = {};
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      Object.assign(out, diff(before[key], after[key], `${path}/${key}`));
    }
    return out;
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return {};
  return { [path]: [before, after] };
}

Deno.test({
  name:
    "rollout: the worker's restart of a Deployment is the same change as `kubectl rollout restart` on its twin",
  ignore: rollout === undefined || withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { info, kubectl: kubectlPath } = rollout!;
    const cluster = openCluster(info);
    const valkey = await startValkey();
    let worker: Program | undefined;
    try {
      // Twins: the same Deployment in two namespaces; the worker watches only the first.
      const { ns: byWorker, kubeconfig } = await cluster.workerNamespace("krt-twin-worker");
      const byKubectl = await cluster.namespace("krt-twin-kubectl");
      const image = "ghcr.io/acme/twin";
      for (const ns of [byWorker, byKubectl]) {
        await cluster.createDeployment(
          deploymentManifest(ns, "app", [{ image: `${image}:dev` }], {
            replicas: 2,
            annotations: { "example.com/kept": "yes" },
          }),
        );
      }
      const before = {
        worker: await waitForRollout(cluster.admin, byWorker, "app"),
        kubectl: await waitForRollout(cluster.admin, byKubectl, "app"),
      };

      worker = (await startWorker({
        VALKEY_ADDR: valkey.addr,
        VALKEY_CHANNEL: "krt-twin",
        ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
        WATCH_NAMESPACES: byWorker,
        CLUSTER_NAME: "twin",
      }, kubeconfig)).program;
      const started = Date.now();
      const id = crypto.randomUUID();
      const event = { id, time: new Date().toISOString(), image, tags: ["dev"] };
      await appendEvent(valkey, JSON.stringify(event));
      const summary = await worker.waitForLog(
        (l) => l.msg === "event handled" && l.event_id === id,
        30_000,
      );
      assertEquals(summary.restarted, [`${byWorker}/app`]);
      await kubectl(kubectlPath, info.adminKubeconfigPath, [
        "--namespace",
        byKubectl,
        "rollout",
        "restart",
        "deployment/app",
      ]);

      const after = {
        worker: await waitForRollout(cluster.admin, byWorker, "app"),
        kubectl: await waitForRollout(cluster.admin, byKubectl, "app"),
      };
      const comparable = (d: any) => ({
        generation: d.metadata.generation,
        labels: d.metadata.labels,
        annotations: d.metadata.annotations,
        spec: d.spec,
      });
      const changes = {
        worker: diff(comparable(before.worker), comparable(after.worker)),
        kubectl: diff(comparable(before.kubectl), comparable(after.kubectl)),
      };
      const restartedAtPath = `/spec/template/metadata/annotations/${RESTARTED_AT}`;
      // The same fields changed, in the same way, except the timestamp's value.
      const withoutTime = (c: Record<string, [unknown, unknown]>) => ({
        ...c,
        [restartedAtPath]: [c[restartedAtPath]?.[0], "<time>"],
      });
      assertEquals(withoutTime(changes.worker), withoutTime(changes.kubectl));
      assertEquals(Object.keys(changes.worker).sort(), [
        `/annotations/${REVISION}`,
        "/generation",
        restartedAtPath,
      ]);
      assertEquals(changes.worker[`/annotations/${REVISION}`], ["1", "2"]);
      // docs/worker.md: the worker writes RFC 3339 UTC with milliseconds, kubectl whole seconds.
      const workerTime = changes.worker[restartedAtPath][1] as string;
      const kubectlTime = changes.kubectl[restartedAtPath][1] as string;
      assertMatch(workerTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assertMatch(kubectlTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      for (const time of [workerTime, kubectlTime]) {
        const at = Date.parse(time);
        assert(at >= started - 1000 && at <= Date.now(), `${time} is the time of the restart`);
      }
      // Each restart rolled out the same way: one new ReplicaSet, the old one scaled to 0.
      for (const [ns, d] of [[byWorker, after.worker], [byKubectl, after.kubectl]] as const) {
        const sets = await replicaSetsOf(cluster.admin, ns, d);
        assertEquals(sets.map((rs: any) => rs.spec.replicas), [0, 2]);
      }
    } finally {
      await worker?.stop();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
