// Observing rollouts on a test cluster that runs the real controllers
// (startControlPlane({ controllers: true })), and running the real kubectl of
// the same release. Test-only code; nothing here enters the product.

// API objects are indexed freely.
// deno-lint-ignore-file no-explicit-any
import { eventually } from "./eventually.ts";
import type { KubeClient } from "./kube_client.ts";

/**
 * What `kubectl rollout status` waits for: the controller saw the latest
 * spec, every replica runs the new template and is available, no old pod is
 * left, and Progressing says the new ReplicaSet made it.
 */
export function rolloutComplete(d: any): boolean {
  const s = d.status ?? {};
  const replicas = d.spec.replicas ?? 1;
  const progressing = (s.conditions ?? []).find((c: any) => c.type === "Progressing");
  return s.observedGeneration === d.metadata.generation &&
    (s.updatedReplicas ?? 0) === replicas &&
    (s.availableReplicas ?? 0) === replicas &&
    (s.replicas ?? 0) === replicas &&
    progressing?.reason === "NewReplicaSetAvailable";
}

/**
 * The Deployment stopped changing by itself: its rollout completed, or, when
 * paused, the controller recorded the pause for the latest generation.
 */
export function settled(d: any): boolean {
  if (!d.spec.paused) return rolloutComplete(d);
  const progressing = (d.status?.conditions ?? []).find((c: any) => c.type === "Progressing");
  return d.status?.observedGeneration === d.metadata.generation &&
    progressing?.reason === "DeploymentPaused";
}

/** Waits until settled(); returns the Deployment then. */
export function waitForSettled(
  client: KubeClient,
  ns: string,
  name: string,
  timeoutMs = 90_000,
): Promise<any> {
  return eventually(`deployment ${ns}/${name} to settle`, async () => {
    const d = await getDeployment(client, ns, name);
    return settled(d) ? d : undefined;
  }, timeoutMs);
}

/** The Deployment, read through `client`. */
export async function getDeployment(client: KubeClient, ns: string, name: string): Promise<any> {
  const res = await client.request("GET", `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
  if (res.status !== 200) throw new Error(`get deployment ${ns}/${name}: HTTP ${res.status}`);
  return res.json;
}

/** Waits until the Deployment's latest rollout completed; returns the Deployment then. */
export function waitForRollout(
  client: KubeClient,
  ns: string,
  name: string,
  timeoutMs = 90_000,
): Promise<any> {
  return eventually(`the rollout of deployment ${ns}/${name} to complete`, async () => {
    const d = await getDeployment(client, ns, name);
    return rolloutComplete(d) ? d : undefined;
  }, timeoutMs);
}

/** The ReplicaSets the Deployment owns, oldest revision first. */
export async function replicaSetsOf(client: KubeClient, ns: string, d: any): Promise<any[]> {
  const res = await client.request("GET", `/apis/apps/v1/namespaces/${ns}/replicasets`);
  if (res.status !== 200) throw new Error(`list replicasets in ${ns}: HTTP ${res.status}`);
  const owned = (res.json as any).items.filter((rs: any) =>
    (rs.metadata.ownerReferences ?? []).some((o: any) => o.uid === d.metadata.uid)
  );
  const revision = (rs: any) =>
    Number(rs.metadata.annotations?.["deployment.kubernetes.io/revision"]);
  return owned.sort((a: any, b: any) => revision(a) - revision(b));
}

/** Runs the real kubectl against `kubeconfig`, with a private HOME and cache; throws on failure. */
export async function kubectl(binary: string, kubeconfig: string, args: string[]): Promise<string> {
  const home = await Deno.makeTempDir({ prefix: "krt-kubectl-" });
  try {
    const output = await new Deno.Command(binary, {
      args: [`--kubeconfig=${kubeconfig}`, `--cache-dir=${home}/cache`, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // Security: the developer's KUBECONFIG or ~/.kube must not redirect a test.
      clearEnv: true,
      env: { HOME: home, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    if (!output.success) {
      const stderr = new TextDecoder().decode(output.stderr).trim();
      throw new Error(`kubectl ${args.join(" ")} exited with ${output.code}: ${stderr}`);
    }
    return stdout;
  } finally {
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
}

/**
 * Makes one Ready pod of the Deployment `app` unready, as a kubelet reports a
 * failing readiness probe (Ready and ContainersReady False, merged by type);
 * the ReplicaSet and Deployment controllers then count one replica fewer
 * available. Returns the pod's name.
 */
export async function makeOnePodUnready(client: KubeClient, ns: string, app: string) {
  const res = await client.request(
    "GET",
    `/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(`app=${app}`)}`,
  );
  if (res.status !== 200) throw new Error(`list pods in ${ns}: HTTP ${res.status}`);
  const pod = (res.json as any).items.find((p: any) =>
    !p.metadata.deletionTimestamp &&
    (p.status?.conditions ?? []).some((c: any) => c.type === "Ready" && c.status === "True")
  );
  if (!pod) throw new Error(`no ready pod of ${ns}/${app}`);
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  const patched = await client.request(
    "PATCH",
    `/api/v1/namespaces/${ns}/pods/${pod.metadata.name}/status`,
    {
      status: {
        conditions: ["Ready", "ContainersReady"].map((type) => ({
          type,
          status: "False",
          lastTransitionTime: now,
          reason: "ContainersNotReady",
        })),
      },
    },
    "application/strategic-merge-patch+json",
  );
  if (patched.status !== 200) {
    throw new Error(`make pod ${ns}/${pod.metadata.name} unready: HTTP ${patched.status}`);
  }
  return pod.metadata.name as string;
}
