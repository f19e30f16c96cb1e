/**
 * What the worker's ServiceAccount must be able to do, exercised through the
 * worker's own modules against the real API server: sync an inventory (list),
 * follow changes (watch), restart (patch) and re-check a changed Deployment
 * (get). Shared by the RBAC test and the k8s/ manifests test. Each outcome
 * comes from what the API server answered, never from a guess: only a 403 is
 * "forbidden", and a capability that decides nothing in time is a "timeout".
 */

// Fixtures index into API objects.
// deno-lint-ignore-file no-explicit-any
import { type Cluster, deploymentManifest, eventually, WORKER_SA } from "./cluster.ts";
import { createKubeClient } from "./control_plane.ts";
import { waitForSettled } from "./rollout.ts";
import { createLogger } from "../../lib/log.ts";
import { createInventory } from "../../worker/inventory/inventory.ts";
import { createKubeApi, type KubeApi } from "../../worker/kube/api.ts";
import { KubeApiError } from "../../worker/kube/errors.ts";
import { loadKubeAccess } from "../../worker/kube/config.ts";
import { summarizeDeployment } from "../../worker/plan.ts";
import { restartDeployment, type RestartOutcome } from "../../worker/restart.ts";

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

/**
 * What one capability came to: it worked, the API server refused it with 403,
 * it failed otherwise (`error <status>`, 0 for a network failure), nothing was
 * decided within the bound (`timeout`, never taken for a refusal), or it could
 * not be tried because an earlier capability failed (`untested`).
 */
export type Outcome = "ok" | "forbidden" | "timeout" | "untested" | `error ${number}`;

/** Which capabilities work, by the verb each needs. */
export interface Capabilities {
  /** The paged initial list (servers without the streaming list, and the fallback). */
  list: Outcome;
  /** The watch that follows the paged list. */
  watch: Outcome;
  /** The streaming initial list the worker prefers (a watch with sendInitialEvents). */
  watchList: Outcome;
  patch: Outcome;
  get: Outcome;
}

/** Only a 403 is a refusal; every other failure keeps its status. */
export function outcomeOf(status: number): Outcome {
  return status === 403 ? "forbidden" : `error ${status}`;
}

function statusOf(err: unknown): number {
  return err instanceof KubeApiError ? err.status : 0;
}

/**
 * Wraps `api` so the first failed list and the first failed watch are kept
 * with their HTTP status: the inventory retries failures by itself and does
 * not say why, and a guess from "it did not work in time" would call a slow
 * server forbidden.
 */
function recordFailures(api: KubeApi) {
  const failures: { list?: number; watch?: number } = {};
  const wrapped: KubeApi = {
    ...api,
    async listDeployments(namespace, options) {
      try {
        return await api.listDeployments(namespace, options);
      } catch (err) {
        failures.list ??= statusOf(err);
        throw err;
      }
    },
    async *watchDeployments(namespace, options) {
      try {
        for await (const event of api.watchDeployments(namespace, options)) {
          if (event.type === "ERROR" && event.object.code !== 410) {
            failures.watch ??= event.object.code ?? 0;
          }
          yield event;
        }
      } catch (err) {
        if (!options.signal.aborted) failures.watch ??= statusOf(err);
        throw err;
      }
    },
  };
  return { api: wrapped, failures };
}

/** Polls `check` until it decides, or answers "timeout" after `timeoutMs`. */
async function decide(check: () => Outcome | undefined, timeoutMs: number): Promise<Outcome> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const outcome = check();
    if (outcome !== undefined) return outcome;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check() ?? "timeout";
}

function restartOutcome(outcome: RestartOutcome): Outcome {
  if (outcome.status === "restarted") return "ok";
  if (outcome.status === "failed") return outcomeOf(outcome.httpStatus);
  throw new Error(`unexpected restart outcome: ${JSON.stringify(outcome)}`);
}

/** Options for capabilities(). */
export interface CapabilityOptions {
  /** How long list and watch may take to decide before they count as a timeout. */
  timeoutMs?: number;
}

/** Exercises each capability the worker needs; returns what each came to. */
export async function capabilities(
  cluster: Cluster,
  kubeApi: KubeApi,
  namespace: string,
  options: CapabilityOptions = {},
): Promise<Capabilities> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const name = `cap-${crypto.randomUUID().slice(0, 6)}`;
  await cluster.createDeployment(
    deploymentManifest(namespace, name, [{ image: "ghcr.io/acme/app:dev" }]),
  );
  const event = { image: "ghcr.io/acme/app", tags: ["dev"] };

  // list + watch, paged as on a server without the streaming list: the
  // inventory syncs, then sees a Deployment created after the sync.
  let list: Outcome;
  let watch: Outcome = "untested";
  {
    const { api, failures } = recordFailures(kubeApi);
    const stop = new AbortController();
    const inventory = createInventory({
      api,
      namespaces: [namespace],
      logger: quiet,
      streamingList: false,
    });
    const running = inventory.run(stop.signal);
    try {
      list = await decide(() => {
        if (inventory.synced()) return "ok";
        return failures.list === undefined ? undefined : outcomeOf(failures.list);
      }, timeoutMs);
      if (list === "ok") {
        const late = `late-${crypto.randomUUID().slice(0, 6)}`;
        await cluster.createDeployment(
          deploymentManifest(namespace, late, [{ image: "ghcr.io/acme/late:dev" }]),
        );
        watch = await decide(() => {
          if (inventory.candidates("ghcr.io/acme/late").some((d) => d.name === late)) return "ok";
          return failures.watch === undefined ? undefined : outcomeOf(failures.watch);
        }, timeoutMs);
      }
    } finally {
      stop.abort();
      await running;
    }
  }

  // The streaming list, as the worker starts by default: one watch request that
  // lists first. Its failures come from the watch request.
  let watchList: Outcome;
  {
    const { api, failures } = recordFailures(kubeApi);
    const stop = new AbortController();
    const inventory = createInventory({ api, namespaces: [namespace], logger: quiet });
    const running = inventory.run(stop.signal);
    try {
      watchList = await decide(() => {
        if (inventory.synced()) return "ok";
        return failures.watch === undefined ? undefined : outcomeOf(failures.watch);
      }, timeoutMs);
    } finally {
      stop.abort();
      await running;
    }
  }

  // patch: restart with the current resourceVersion.
  const current = summarizeDeployment(await cluster.getDeployment(namespace, name));
  const target = {
    namespace,
    name,
    resourceVersion: current.resourceVersion,
    containers: ["c0"],
    pullPolicyWarnings: [],
    restartedAtMs: NaN,
  };
  const patch = restartOutcome(
    await restartDeployment(target, { api: kubeApi, event, maxAttempts: 1 }),
  );
  // The restart rolls out; its status writes would outdate resourceVersions below.
  if (patch === "ok" && cluster.info.controllers) {
    await waitForSettled(cluster.admin, namespace, name);
  }

  // get: a Deployment changed after it was matched is re-read before the patch
  // (only reachable when patch works: the conflict comes from a patch).
  let get: Outcome = "untested";
  if (patch === "ok") {
    const stale = summarizeDeployment(await cluster.getDeployment(namespace, name))
      .resourceVersion;
    await cluster.admin.request(
      "PATCH",
      `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`,
      { metadata: { labels: { touched: "yes" } } },
      "application/merge-patch+json",
    );
    get = restartOutcome(
      await restartDeployment({ ...target, resourceVersion: stale }, {
        api: kubeApi,
        event,
        maxAttempts: 2,
      }),
    );
  }
  return { list, watch, watchList, patch, get };
}
