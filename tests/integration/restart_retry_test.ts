/**
 * The restart's retry policy against the real API server: injected 5xx and
 * 429 answers are retried until the real patch lands; a real 403 (RBAC
 * without patch) and a real 404 are not retried; a real 409 (the Deployment
 * changed since it was matched) re-reads and re-plans it, and a Deployment
 * that no longer uses the image is skipped without any write.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { waitForAccess } from "../helpers/capabilities.ts";
import { deploymentManifest, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { createKubeApi, type KubeApi } from "../../worker/kube/api.ts";
import { KubeApiError } from "../../worker/kube/errors.ts";
import { loadKubeAccess } from "../../worker/kube/config.ts";
import { summarizeDeployment } from "../../worker/plan.ts";
import { restartDeployment, type RestartOutcome } from "../../worker/restart.ts";

/** A restart's outcome without the patched object it carries (compared elsewhere). */
function withoutObject(outcome: RestartOutcome): unknown {
  if (outcome.status !== "restarted") return outcome;
  const { deployment: _, ...rest } = outcome;
  return rest;
}

const info = requireControlPlane("the restart retry tests");
const event = { image: "ghcr.io/acme/app", tags: ["dev"] };

/** Asserts the real calls were patches, each refused one (409) followed by one re-read. */
function assertConflictRounds(calls: string[]): void {
  assertMatch(calls.join(","), /^(patch,get,)*patch$/);
}

/** The real API, with the first patches answered by injected failures. */
function withFailures(api: KubeApi, statuses: number[]): KubeApi {
  const queue = [...statuses];
  return {
    ...api,
    patchDeployment(namespace, name, patch) {
      const status = queue.shift();
      if (status !== undefined) {
        return Promise.reject(new KubeApiError(status, "Injected", `injected ${status}`));
      }
      return api.patchDeployment(namespace, name, patch);
    },
  };
}

Deno.test({
  name:
    "restartDeployment() retries 5xx and 429, re-plans after a 409 and never retries 403 or 404",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    try {
      const ns = await cluster.namespace("krt-retry");
      await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
      const access = await loadKubeAccess({ kubeconfig: await cluster.workerKubeconfig() });
      for (const verb of ["get", "patch"]) await waitForAccess(cluster, ns, verb, true);
      const calls: string[] = [];
      const api = createKubeApi({
        server: access.server,
        httpClient: access.httpClient,
        authorization: access.authorization,
        onRequest: (verb) => calls.push(verb),
      });
      const target = async (name: string) => {
        await cluster.createDeployment(
          deploymentManifest(ns, name, [{ image: "ghcr.io/acme/app:dev" }]),
        );
        const summary = summarizeDeployment(await cluster.getDeployment(ns, name));
        return {
          namespace: ns,
          name,
          resourceVersion: summary.resourceVersion,
          containers: ["c0"],
          pullPolicyWarnings: [],
          restartedAtMs: NaN,
        };
      };

      for (const statuses of [[500], [503, 502], [429, 429, 500]]) {
        await t.step(`retries through ${statuses.join(", ")} and then restarts`, async () => {
          const d = await target(`retry-${statuses.join("-")}`);
          calls.length = 0;
          const outcome = await restartDeployment(d, { api: withFailures(api, statuses), event });
          // Injected failures never reach the server; the real calls are the landing patch,
          // after any real 409s a controller's status write caused on the new Deployment.
          assertConflictRounds(calls);
          assertEquals(withoutObject(outcome), {
            status: "restarted",
            attempts: statuses.length + calls.filter((c) => c === "patch").length,
          });
          const after = await cluster.getDeployment(ns, d.name);
          assertEquals(
            typeof after.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"],
            "string",
          );
        });
      }
      await t.step("gives up after five failed attempts", async () => {
        const d = await target("always-500");
        const outcome = await restartDeployment(d, {
          api: withFailures(api, [500, 500, 500, 500, 500, 500]),
          event,
        });
        assertEquals(outcome.status, "failed");
      });
      const RESTARTED_AT = "kubectl.kubernetes.io/restartedAt";
      /** Changes the Deployment as its owner would, after the worker matched it. */
      const ownerPatch = async (name: string, patch: unknown) => {
        const res = await cluster.admin.request(
          "PATCH",
          `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
          patch,
          "application/strategic-merge-patch+json",
        );
        assertEquals(res.status, 200, `owner's patch of ${name}`);
        return await cluster.getDeployment(ns, name);
      };
      const conflicts: [string, unknown, string][] = [
        [
          "a real 409 after the image changed to another is a skip, and nothing is written",
          {
            spec: {
              template: { spec: { containers: [{ name: "c0", image: "ghcr.io/acme/other:dev" }] } },
            },
          },
          "no_longer_uses_image",
        ],
        [
          "a real 409 after the image was pinned by digest is a skip as digest_pinned",
          {
            spec: {
              template: {
                spec: {
                  containers: [{ name: "c0", image: `ghcr.io/acme/app@sha256:${"a".repeat(64)}` }],
                },
              },
            },
          },
          "digest_pinned",
        ],
        ["a real 409 after the Deployment was paused is a skip as paused", {
          spec: { paused: true },
        }, "paused"],
      ];
      for (const [name, change, reason] of conflicts) {
        await t.step(name, async () => {
          const d = await target(`conflict-${reason.replaceAll("_", "-")}`);
          const changed = await ownerPatch(d.name, change);
          calls.length = 0;
          const outcome = await restartDeployment(d, { api, event });
          assertEquals(outcome, { status: "skipped", reason });
          assertEquals(calls, ["patch", "get"], "one refused patch, one re-read, no second patch");
          const after = await cluster.getDeployment(ns, d.name);
          // The controllers write status after the owner's change (new resourceVersions);
          // a write of ours would move the spec, and with it the generation.
          assertEquals(after.metadata.generation, changed.metadata.generation, "not written");
          assertEquals(after.spec, changed.spec, "not written");
          assertEquals(after.spec.template.metadata?.annotations?.[RESTARTED_AT], undefined);
        });
      }
      await t.step(
        "a real 409 while the Deployment still uses the image restarts it on the re-read version",
        async () => {
          const d = await target("conflict-still-uses");
          await ownerPatch(d.name, { metadata: { annotations: { owner: "touched" } } });
          calls.length = 0;
          const outcome = await restartDeployment(d, { api, event });
          // The controllers may write the new Deployment's status between our re-read and
          // our patch: that is one more real 409, answered the same way (re-read, re-plan).
          assertConflictRounds(calls);
          assertEquals(withoutObject(outcome), {
            status: "restarted",
            attempts: calls.filter((c) => c === "patch").length,
          });
          assert(calls.length >= 3, "the owner's change was a real 409 and was re-read");
          const after = await cluster.getDeployment(ns, d.name);
          assertEquals(typeof after.spec.template.metadata.annotations[RESTARTED_AT], "string");
          assertEquals(after.metadata.annotations.owner, "touched");
        },
      );
      await t.step("a real 404 (deleted Deployment) is not retried", async () => {
        calls.length = 0;
        const outcome = await restartDeployment(
          {
            namespace: ns,
            name: "never-existed",
            resourceVersion: "1",
            containers: ["c0"],
            pullPolicyWarnings: [],
            restartedAtMs: NaN,
          },
          { api, event },
        );
        assertEquals(outcome, { status: "skipped", reason: "deleted" });
        assertEquals(calls, ["patch"]);
      });
      await t.step("a real 403 (RBAC without patch) is not retried", async () => {
        const d = await target("forbidden");
        await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", {
          namespace: ns,
          edit: (doc) => {
            if (doc.kind === "Role") doc.rules[0].verbs = ["get", "list", "watch"];
          },
        });
        await waitForAccess(cluster, ns, "patch", false);
        calls.length = 0;
        const outcome = await restartDeployment(d, { api, event });
        assertEquals(outcome.status, "failed");
        assertEquals(outcome.status === "failed" ? outcome.httpStatus : 0, 403);
        assertEquals(calls, ["patch"]);
      });
    } finally {
      await cluster.cleanup();
    }
  },
});
