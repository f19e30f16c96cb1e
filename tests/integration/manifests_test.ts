/**
 * k8s/ as users deploy it: `kubectl apply --server-side -k` (kubectl built
 * from the same Kubernetes release, with its built-in kustomize) against the
 * real API server, into the namespace the manifests create with Pod Security
 * "restricted" enforced and warned. No errors, no warnings, and the worker's
 * ServiceAccount from these manifests can do its job.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { capabilities, waitForAccess, workerApi } from "../helpers/capabilities.ts";
import { eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { ROOT } from "../helpers/program.ts";

const info = requireControlPlane("the k8s/ manifests test");
const kubectl = Deno.env.get("KRT_TEST_KUBECTL");

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(kubectl!, {
    args: ["--kubeconfig", info!.adminKubeconfigPath, ...args],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

Deno.test({
  name:
    "k8s/ applies with kubectl apply --server-side -k under Pod Security restricted, without warnings",
  ignore: info === undefined || kubectl === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    try {
      for (const overlay of ["k8s/overlays/quickstart", "k8s/rbac/cluster-wide"]) {
        await t.step(`${overlay} applies cleanly`, async () => {
          const result = await run([
            "apply",
            "--server-side",
            "--field-manager=krt-tests",
            "--force-conflicts",
            "-k",
            overlay,
          ]);
          assertEquals(result.code, 0, result.stderr);
          assert(!/warning/i.test(result.stderr), `warnings: ${result.stderr}`);
        });
      }
      await t.step(
        "the product namespace enforces and warns on Pod Security restricted",
        async () => {
          const ns = (await cluster.admin.request("GET", "/api/v1/namespaces/kuberollouttrigger"))
            .json as {
              metadata: { labels: Record<string, string> };
            };
          assertEquals(ns.metadata.labels["pod-security.kubernetes.io/enforce"], "restricted");
          assertEquals(ns.metadata.labels["pod-security.kubernetes.io/warn"], "restricted");
        },
      );
      await t.step(
        "every Deployment's pod template passes a server-side dry run as a restricted Pod",
        async () => {
          // The ServiceAccount controller of the test cluster makes "default".
          const defaultSa = "/api/v1/namespaces/kuberollouttrigger/serviceaccounts/default";
          await eventually(
            "the default ServiceAccount",
            async () => (await cluster.admin.request("GET", defaultSa)).status === 200 || undefined,
            30_000,
          );
          for (const name of ["kuberollouttrigger-web", "kuberollouttrigger-worker", "valkey"]) {
            const d = await cluster.getDeployment("kuberollouttrigger", name);
            const pod = {
              apiVersion: "v1",
              kind: "Pod",
              metadata: { name: `${name}-dry`, namespace: "kuberollouttrigger" },
              spec: d.spec.template.spec,
            };
            // Admission sees the new ServiceAccount through a cache: retry briefly.
            const res = await eventually("the ServiceAccount to reach admission", async () => {
              const r = await cluster.admin.request(
                "POST",
                "/api/v1/namespaces/kuberollouttrigger/pods?dryRun=All",
                pod,
              );
              return /serviceaccount .* not found/.test(JSON.stringify(r.json)) ? undefined : r;
            });
            assertEquals(res.status, 201, `${name}: ${JSON.stringify(res.json).slice(0, 400)}`);
            assertEquals(res.warnings, [], name);
          }
        },
      );
      await t.step(
        "web mounts no ServiceAccount token; the worker runs as its ServiceAccount",
        async () => {
          const web = await cluster.getDeployment("kuberollouttrigger", "kuberollouttrigger-web");
          assertEquals(web.spec.template.spec.automountServiceAccountToken, false);
          const worker = await cluster.getDeployment(
            "kuberollouttrigger",
            "kuberollouttrigger-worker",
          );
          assertEquals(worker.spec.template.spec.serviceAccountName, "kuberollouttrigger-worker");
        },
      );
      await t.step(
        "the worker's ServiceAccount from these manifests can do its job in the watched namespace",
        async () => {
          for (const verb of ["get", "list", "watch", "patch"]) {
            await waitForAccess(cluster, "default", verb, true);
          }
          const api = await workerApi(cluster);
          assertEquals(await capabilities(cluster, api, "default"), {
            list: "ok",
            watch: "ok",
            patch: "ok",
            get: "ok",
          });
        },
      );
    } finally {
      await run(["delete", "--ignore-not-found", "-k", "k8s/rbac/cluster-wide"]);
      const list =
        (await cluster.admin.request("GET", "/apis/apps/v1/namespaces/default/deployments"))
          .json as {
            items: { metadata: { name: string } }[];
          };
      for (const d of list.items) {
        await cluster.admin.request(
          "DELETE",
          `/apis/apps/v1/namespaces/default/deployments/${d.metadata.name}`,
        );
      }
      await cluster.cleanup();
    }
  },
});
