/**
 * What the worker's ServiceAccount must be able to do, exercised through the
 * worker's own modules against the real API server: sync an inventory (list),
 * follow changes (watch), restart (patch) and re-check a changed Deployment
 * (get). Shared by the RBAC test and the k8s/ manifests test.
 */

// Fixtures index into API objects.
// deno-lint-ignore-file no-explicit-any
import { type Cluster, deploymentManifest, eventually, WORKER_SA } from "./cluster.ts";
import { createKubeClient } from "./control_plane.ts";
import { waitForSettled } from "./rollout.ts";
import { createLogger } from "../../shared/log.ts";
import { createInventory } from "../../worker/inventory.ts";
import { createKubeApi, type KubeApi } from "../../worker/kube_api.ts";
import { loadKubeAccess } from "../../worker/kube_config.ts";
import { summarizeDeployment } from "../../worker/plan.ts";
import { restartDeployment } from "../../worker/restart.ts";

const quiet = createLogger({ level: "error", write: () => {} });

/** The worker's KubeApi, authenticated as its ServiceAccount. */
export async function workerApi(cluster: Cluster): Promise<KubeApi> {
  const access = await loadKubeAccess({ kubeconfig: await cluster.workerKubeconfig() });
  return createKubeApi({
    server: access.server,
    httpClient: access.httpClient,
    authorization: access.authorization,
  });
}

/** Waits until the API server's RBAC cache says the worker may (or may not) use `verb`. */
export async function waitForAccess(
  cluster: Cluster,
  namespace: string,
  verb: string,
  allowed: boolean,
) {
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
export async function capabilities(
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
  // The restart rolls out; its status writes would outdate resourceVersions below.
  if (cluster.info.controllers) await waitForSettled(cluster.admin, namespace, name);

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
