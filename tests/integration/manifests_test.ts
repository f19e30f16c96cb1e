// Rendered manifests are indexed freely.
// deno-lint-ignore-file no-explicit-any
/**
 * k8s/ as users deploy it, the way docs/deployment.md says: client-side
 * `kubectl apply -k` (kubectl built from the same Kubernetes release, with its
 * built-in kustomize) against the real API server. The quickstart overlay and
 * the cluster-wide RBAC go into a namespace of the test's own (a kustomize
 * overlay renames it, as a user's would), so every object is new, as on a
 * fresh cluster: a server dry run passes once the namespace exists, the apply
 * has no error and no warning under Pod Security "restricted", a second apply
 * reports every object `unchanged`, and the worker's ServiceAccount from these
 * manifests can do its job. Every overlay names its cluster: the base's
 * CLUSTER_NAME is a placeholder the worker refuses, so no two clusters fall
 * back to one name silently.
 */

import { assert, assertEquals, assertNotEquals, assertThrows } from "../helpers/assert.ts";
import { capabilities } from "../helpers/capabilities.ts";
import { openCluster, suffix } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import {
  applyReport,
  CLUSTER_SCOPED,
  dryRunPodTemplates,
  kubectl,
  serviceAccountApi,
  waitForDeploymentAccess,
} from "../helpers/kubectl.ts";
import { ROOT } from "../helpers/program.ts";
import { settingsFor } from "../../config/settings.ts";
import { parse, parseAllDocuments, stringify } from "yaml";

const info = requireControlPlane("the k8s/ manifests test");
const hasKubectl = Deno.env.get("KRT_TEST_KUBECTL") !== undefined;

const CLUSTER_NAME = settingsFor("worker").find(([, s]) => s.env === "CLUSTER_NAME")![1];

/** CLUSTER_NAME in the settings ConfigMap of `documents`. */
function clusterNameIn(documents: Record<string, any>[]): string {
  const config = documents.find((d) =>
    d.kind === "ConfigMap" && d.metadata.name === "kuberollouttrigger"
  );
  return config!.data.CLUSTER_NAME;
}

Deno.test("k8s/base names no cluster: its CLUSTER_NAME is a placeholder the worker refuses", () => {
  const base = parseAllDocuments(Deno.readTextFileSync(`${ROOT}k8s/base/config.yaml`))
    .map((d) => d.toJS());
  const name = clusterNameIn(base);
  assertEquals(name, "<set per cluster in your overlay>");
  assertThrows(() => CLUSTER_NAME.parse(name), { message: /must be 1-63 letters/ });
  assertEquals(
    CLUSTER_NAME.default,
    "default",
    "the program's default, which no overlay may rely on",
  );
});

Deno.test({
  name:
    "every overlay in k8s/overlays names its cluster: a CLUSTER_NAME the worker takes, never default",
  ignore: !hasKubectl,
  async fn(t) {
    for (const entry of Deno.readDirSync(`${ROOT}k8s/overlays`)) {
      if (!entry.isDirectory) continue;
      await t.step(entry.name, async () => {
        const out = await new Deno.Command(Deno.env.get("KRT_TEST_KUBECTL")!, {
          args: ["kustomize", `${ROOT}k8s/overlays/${entry.name}`],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        const decode = (b: Uint8Array) => new TextDecoder().decode(b);
        assertEquals(out.code, 0, decode(out.stderr));
        const name = clusterNameIn(parseAllDocuments(decode(out.stdout)).map((d) => d.toJS()));
        assertEquals(CLUSTER_NAME.parse(name), name, "the worker takes it as it is");
        assertNotEquals(name, CLUSTER_NAME.default);
        const kustomization = parse(
          Deno.readTextFileSync(`${ROOT}k8s/overlays/${entry.name}/kustomization.yaml`),
        );
        assert(JSON.stringify(kustomization).includes("/data/CLUSTER_NAME"), "set in the overlay");
      });
    }
  },
});

/**
 * An overlay as a user writes one: the quickstart plus cluster-wide RBAC in
 * namespace `product`, with the worker's Role in `watched`.
 */
async function writeOverlay(dir: string, product: string, watched: string): Promise<string> {
  await Deno.mkdir(`${dir}/inner`, { recursive: true });
  await Deno.mkdir(`${dir}/outer`, { recursive: true });
  // kustomize takes relative paths only: from inner/ up to / and down to the repository.
  const up = "../".repeat(`${dir}/inner`.split("/").filter(Boolean).length);
  const repo = `${up}${ROOT.replace(/^\//, "")}`;
  await Deno.writeTextFile(
    `${dir}/inner/kustomization.yaml`,
    stringify({
      resources: [`${repo}k8s/overlays/quickstart`, `${repo}k8s/rbac/cluster-wide`],
      namespace: product,
    }),
  );
  const move = (kind: string) => ({
    target: { kind, name: "kuberollouttrigger-worker" },
    patch: `- op: replace\n  path: /metadata/namespace\n  value: ${watched}\n`,
  });
  await Deno.writeTextFile(
    `${dir}/outer/kustomization.yaml`,
    stringify({ resources: ["../inner"], patches: [move("Role"), move("RoleBinding")] }),
  );
  return `${dir}/outer`;
}

Deno.test({
  name:
    "k8s/ applies with kubectl apply -k under Pod Security restricted, without warnings, and re-applies unchanged",
  ignore: info === undefined || !hasKubectl,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    const product = `krt-qs-${suffix()}`;
    const watched = await cluster.namespace("krt-qs-apps");
    const dir = await Deno.makeTempDir({ prefix: "krt-overlay-" });
    try {
      const overlay = await writeOverlay(dir, product, watched);
      const deleted = await kubectl(info!, ["delete", "--ignore-not-found", ...CLUSTER_SCOPED]);
      assertEquals(deleted.code, 0, deleted.stderr);

      const built = await kubectl(info!, ["kustomize", overlay]);
      assertEquals(built.code, 0, built.stderr);
      const namespaceDoc = parseAllDocuments(built.stdout).map((d) => d.toJS())
        .find((d) => d.kind === "Namespace");
      assertEquals(namespaceDoc.metadata.name, product);

      await t.step("a server dry run passes once the namespace exists", async () => {
        const ns = await kubectl(info!, ["apply", "-f", "-"], stringify(namespaceDoc));
        assertEquals(ns.code, 0, ns.stderr);
        const dry = await kubectl(info!, ["apply", "--dry-run=server", "-k", overlay]);
        assertEquals(dry.code, 0, dry.stderr);
        assertEquals(dry.stderr, "", "no warnings");
      });

      let objects: string[] = [];
      await t.step("the first apply creates everything, with no warning", async () => {
        const first = await kubectl(info!, ["apply", "-k", overlay]);
        assertEquals(first.code, 0, first.stderr);
        assertEquals(first.stderr, "", "no warnings");
        const report = applyReport(first.stdout);
        objects = Object.keys(report);
        assert(objects.length >= 14, first.stdout);
        for (const [object, verb] of Object.entries(report)) {
          assertEquals(verb, object.startsWith("namespace/") ? "unchanged" : "created", object);
        }
      });

      await t.step("a second apply reports every object unchanged", async () => {
        const again = await kubectl(info!, ["apply", "-k", overlay]);
        assertEquals(again.code, 0, again.stderr);
        assertEquals(again.stderr, "");
        const report = applyReport(again.stdout);
        assertEquals(Object.keys(report).sort(), [...objects].sort());
        const changed = Object.entries(report).filter(([, verb]) => verb !== "unchanged");
        assertEquals(changed, [], "objects a re-apply would change");
        const diff = await kubectl(info!, ["diff", "-k", overlay]);
        assertEquals(diff.code, 0, `kubectl diff finds a difference:\n${diff.stdout}`);
      });

      await t.step(
        "the product namespace enforces and warns on Pod Security restricted",
        async () => {
          const ns = (await cluster.admin.request("GET", `/api/v1/namespaces/${product}`))
            .json as { metadata: { labels: Record<string, string> } };
          assertEquals(ns.metadata.labels["pod-security.kubernetes.io/enforce"], "restricted");
          assertEquals(ns.metadata.labels["pod-security.kubernetes.io/warn"], "restricted");
        },
      );
      await t.step(
        "every Deployment's pod template passes a server-side dry run as a restricted Pod",
        async () => {
          await dryRunPodTemplates(cluster, product, [
            "kuberollouttrigger-web",
            "kuberollouttrigger-worker",
            "valkey",
          ]);
        },
      );
      await t.step(
        "web mounts no ServiceAccount token; the worker runs as its ServiceAccount",
        async () => {
          const web = await cluster.getDeployment(product, "kuberollouttrigger-web");
          assertEquals(web.spec.template.spec.automountServiceAccountToken, false);
          const worker = await cluster.getDeployment(product, "kuberollouttrigger-worker");
          assertEquals(worker.spec.template.spec.serviceAccountName, "kuberollouttrigger-worker");
        },
      );
      await t.step(
        "the worker's ServiceAccount from these manifests can do its job in the watched namespace",
        async () => {
          const sa = { namespace: product, name: "kuberollouttrigger-worker" };
          for (const verb of ["get", "list", "watch", "patch"]) {
            await waitForDeploymentAccess(cluster, sa, watched, verb);
          }
          const { api, dispose } = await serviceAccountApi(cluster, sa.namespace, sa.name);
          try {
            assertEquals(await capabilities(cluster, api, watched), {
              list: "ok",
              watch: "ok",
              watchList: "ok",
              patch: "ok",
              get: "ok",
            });
          } finally {
            await dispose();
          }
        },
      );
    } finally {
      // The cluster-wide grant must not outlive this test; the policy stays, as
      // every cluster running a worker should have it.
      await kubectl(info!, ["delete", "--ignore-not-found", ...CLUSTER_SCOPED.slice(2)]);
      await cluster.admin.deleteNamespace(product).catch(() => {});
      await Deno.remove(dir, { recursive: true });
      await cluster.cleanup();
    }
  },
});
