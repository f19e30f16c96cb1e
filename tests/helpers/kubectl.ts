/**
 * kubectl as docs/deployment.md tells users to run it: client-side
 * `kubectl apply` (kubectl's default), whose report names each object
 * `created`, `configured` or `unchanged`, against the shared test API server.
 * Also the worker's API access as a ServiceAccount of any namespace, for
 * manifests installed into a namespace of the test's own.
 */

import { type Cluster, eventually } from "./cluster.ts";
import { type ControlPlaneInfo, createKubeClient, writeKubeconfig } from "./control_plane.ts";
import { ROOT } from "./program.ts";
import { loadKubeAccess } from "../../worker/kube/config.ts";
import { createKubeApi, type KubeApi } from "../../worker/kube/api.ts";

/**
 * The cluster-scoped objects k8s/ and the chart ship (policy and binding first).
 * Other tests apply them server-side; a test that checks client-side apply's
 * report deletes them first, so it sees them created as on a fresh cluster.
 */
export const CLUSTER_SCOPED = [
  "validatingadmissionpolicy/kuberollouttrigger-worker-restart-only",
  "validatingadmissionpolicybinding/kuberollouttrigger-worker-restart-only",
  "clusterrole/kuberollouttrigger-worker",
  "clusterrolebinding/kuberollouttrigger-worker",
];

/** What one kubectl run printed. */
export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl (KRT_TEST_KUBECTL) as the test cluster's admin, with optional stdin. */
export async function kubectl(
  info: ControlPlaneInfo,
  args: string[],
  stdin?: string,
): Promise<KubectlResult> {
  const child = new Deno.Command(Deno.env.get("KRT_TEST_KUBECTL")!, {
    args: ["--kubeconfig", info.adminKubeconfigPath, ...args],
    cwd: ROOT,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** `kind/name verb` lines of a kubectl apply report, as { "kind/name": verb }. */
export function applyReport(stdout: string): Record<string, string> {
  const report: Record<string, string> = {};
  for (const line of stdout.trim().split("\n").filter(Boolean)) {
    const m = /^(\S+) (created|configured|unchanged|serverside-applied)( \(server dry run\))?$/
      .exec(line);
    if (!m) throw new Error(`not an apply report line: ${line}`);
    report[m[1]] = m[2];
  }
  return report;
}

/** The worker's KubeApi as the ServiceAccount `namespace/name`. */
export async function serviceAccountApi(
  cluster: Cluster,
  namespace: string,
  name: string,
): Promise<{ api: KubeApi; kubeconfig: string; dispose: () => Promise<void> }> {
  const token = await cluster.admin.serviceAccountToken(namespace, name, 3600);
  const dir = await Deno.makeTempDir({ prefix: "krt-sa-" });
  const kubeconfig = `${dir}/kubeconfig`;
  await writeKubeconfig(kubeconfig, {
    server: cluster.info.server,
    caPem: cluster.info.caPem,
    token,
  });
  const access = await loadKubeAccess({ kubeconfig });
  const api = createKubeApi({
    server: access.server,
    httpClient: access.httpClient,
    authorization: access.authorization,
  });
  return { api, kubeconfig, dispose: () => Deno.remove(dir, { recursive: true }) };
}

/** Waits until RBAC lets the ServiceAccount use `verb` on Deployments in `watched`. */
export async function waitForDeploymentAccess(
  cluster: Cluster,
  sa: { namespace: string; name: string },
  watched: string,
  verb: string,
): Promise<void> {
  const token = await cluster.admin.serviceAccountToken(sa.namespace, sa.name, 600);
  const client = createKubeClient({
    server: cluster.info.server,
    caPem: cluster.info.caPem,
    token,
  });
  try {
    await eventually(`RBAC to allow ${verb} in ${watched}`, async () => {
      const res = await client.request(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SelfSubjectAccessReview",
          spec: {
            resourceAttributes: {
              group: "apps",
              resource: "deployments",
              verb,
              namespace: watched,
            },
          },
        },
      );
      return (res.json as { status?: { allowed?: boolean } })?.status?.allowed ? true : undefined;
    });
  } finally {
    client.close();
  }
}

/** Every Deployment pod template of `namespace` passes a server dry run as a Pod, with no warning. */
export async function dryRunPodTemplates(
  cluster: Cluster,
  namespace: string,
  names: string[],
): Promise<void> {
  const defaultSa = `/api/v1/namespaces/${namespace}/serviceaccounts/default`;
  await eventually(
    "the default ServiceAccount",
    async () => (await cluster.admin.request("GET", defaultSa)).status === 200 || undefined,
    30_000,
  );
  for (const name of names) {
    const d = await cluster.getDeployment(namespace, name);
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `${name}-dry`, namespace },
      spec: d.spec.template.spec,
    };
    // Admission sees a new ServiceAccount through a cache: retry briefly.
    const res = await eventually("the ServiceAccount to reach admission", async () => {
      const r = await cluster.admin.request(
        "POST",
        `/api/v1/namespaces/${namespace}/pods?dryRun=All`,
        pod,
      );
      return /serviceaccount .* not found/.test(JSON.stringify(r.json)) ? undefined : r;
    });
    if (res.status !== 201) {
      throw new Error(`${name}: ${res.status} ${JSON.stringify(res.json).slice(0, 400)}`);
    }
    if (res.warnings.length > 0) throw new Error(`${name}: warnings ${res.warnings}`);
  }
}
