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
 * back to one name silently. And k8s/base runs signed in both directions: its
 * pods require the Secrets and ConfigMaps k8s/signing makes (from keys made
 * here, as the documented openssl recipe makes them), so an install without
 * them does not start instead of running unsigned.
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
import { reportKeyLine, SIGNING_OBJECTS } from "../helpers/helm.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { settingsFor } from "../../config/settings.ts";
import { parse, parseAllDocuments, stringify } from "yaml";

const info = requireControlPlane("the k8s/ manifests test");
const hasKubectl = Deno.env.get("KRT_TEST_KUBECTL") !== undefined;

const CLUSTER_NAME = settingsFor("worker").find(([, s]) => s.env === "CLUSTER_NAME")![1];
const REPORT_VERIFY_KEYS = settingsFor("web").find(([, s]) => s.env === "REPORT_VERIFY_KEYS")?.[1];

/** `kubectl kustomize dir`'s documents. */
async function kustomize(dir: string): Promise<Record<string, any>[]> {
  const out = await new Deno.Command(Deno.env.get("KRT_TEST_KUBECTL")!, {
    args: ["kustomize", dir],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  assertEquals(out.code, 0, decode(out.stderr));
  return parseAllDocuments(decode(out.stdout)).map((d) => d.toJS()).filter(Boolean);
}

/**
 * k8s/signing as a user fills it in, in `dir`: its kustomization.yaml beside
 * the files it names, made as its comment says (web's event key pair, this
 * cluster's report key pair, web's list of cluster=key lines).
 */
async function writeSigning(dir: string, cluster: string) {
  const event = await generateKeyPair();
  const report = await generateKeyPair();
  await Deno.mkdir(dir, { recursive: true });
  await Deno.copyFile(`${ROOT}k8s/signing/kustomization.yaml`, `${dir}/kustomization.yaml`);
  const reportVerify = `${cluster}=${reportKeyLine(report.publicPem)}\n`;
  await Deno.writeTextFile(`${dir}/event-signing.pem`, event.privatePem);
  await Deno.writeTextFile(`${dir}/event-verify.pem`, event.publicPem);
  await Deno.writeTextFile(`${dir}/report-signing.pem`, report.privatePem);
  await Deno.writeTextFile(`${dir}/report-verify-keys.txt`, reportVerify);
  return { event, report, reportVerify };
}

/** Every env var of `deployment`'s containers that comes from a Secret or ConfigMap key. */
function keyRefs(deployment: Record<string, any>) {
  return deployment.spec.template.spec.containers.flatMap((c: Record<string, any>) =>
    (c.env ?? []).filter((e: Record<string, any>) => e.valueFrom).map((e: Record<string, any>) => {
      const [kind, ref] = e.valueFrom.secretKeyRef
        ? ["Secret", e.valueFrom.secretKeyRef]
        : ["ConfigMap", e.valueFrom.configMapKeyRef];
      return { env: e.name, kind, name: ref.name, key: ref.key, optional: ref.optional };
    })
  );
}

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

Deno.test({
  name:
    "security: k8s/base runs signed both ways: web and worker require k8s/signing's Secrets and ConfigMaps, never optional",
  ignore: !hasKubectl,
  async fn(t) {
    const base = await kustomize(`${ROOT}k8s/base`);
    const deployment = (name: string) =>
      base.find((d) => d.kind === "Deployment" && d.metadata.name === name)!;
    const o = SIGNING_OBJECTS;
    await t.step(
      "web: its event signing key from a Secret, the report keys from a ConfigMap",
      () => {
        assertEquals(keyRefs(deployment("kuberollouttrigger-web")), [
          { env: "EVENT_SIGNING_KEY", kind: "Secret", ...o.eventSigning, optional: undefined },
          { env: "REPORT_VERIFY_KEYS", kind: "ConfigMap", ...o.reportVerify, optional: undefined },
        ]);
      },
    );
    await t.step("worker: web's public key from a ConfigMap, its report key from a Secret", () => {
      assertEquals(keyRefs(deployment("kuberollouttrigger-worker")), [
        { env: "EVENT_VERIFY_KEYS", kind: "ConfigMap", ...o.eventVerify, optional: undefined },
        { env: "REPORT_SIGNING_KEY", kind: "Secret", ...o.reportSigning, optional: undefined },
      ]);
    });
    await t.step("no key is in the base, and nothing else is optional", () => {
      assertEquals(base.filter((d) => d.kind === "Secret"), []);
      for (const d of base.filter((d) => d.kind === "Deployment")) {
        const text = JSON.stringify(d.spec.template.spec);
        assert(!text.includes('"optional":true'), `${d.metadata.name}: an optional reference`);
      }
    });
    await t.step("k8s/signing makes exactly the objects and keys the base requires", async () => {
      const dir = await Deno.makeTempDir({ prefix: "krt-signing-" });
      try {
        const made = await writeSigning(`${dir}/signing`, "quickstart");
        const signing = await kustomize(`${dir}/signing`);
        const refs = [
          ...keyRefs(deployment("kuberollouttrigger-web")),
          ...keyRefs(deployment("kuberollouttrigger-worker")),
        ];
        assertEquals(
          signing.map((d) => `${d.kind}/${d.metadata.namespace}/${d.metadata.name}`).sort(),
          refs.map((r: any) => `${r.kind}/kuberollouttrigger/${r.name}`).sort(),
        );
        const value = (r: any) => {
          const d = signing.find((d) => d.kind === r.kind && d.metadata.name === r.name)!;
          assertEquals(Object.keys(d.data), [r.key], `${r.name} holds its one key`);
          return r.kind === "Secret" ? atob(d.data[r.key]) : d.data[r.key];
        };
        const byEnv = Object.fromEntries(refs.map((r: any) => [r.env, value(r)]));
        assertEquals(byEnv, {
          EVENT_SIGNING_KEY: made.event.privatePem,
          EVENT_VERIFY_KEYS: made.event.publicPem,
          REPORT_SIGNING_KEY: made.report.privatePem,
          REPORT_VERIFY_KEYS: made.reportVerify,
        });
        for (const d of signing.filter((d) => d.kind === "ConfigMap")) {
          assert(
            !JSON.stringify(d).includes("PRIVATE KEY"),
            `${d.metadata.name} holds a private key`,
          );
        }
        // The value the recipe makes is one web takes: the report key of cluster "quickstart".
        assert(REPORT_VERIFY_KEYS, "web has a REPORT_VERIFY_KEYS setting");
        const parsed = REPORT_VERIFY_KEYS.parse(made.reportVerify) as Map<string, unknown[]>;
        assertEquals([...parsed.keys()], ["quickstart"]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

/**
 * An overlay as a user writes one: the quickstart plus cluster-wide RBAC in
 * namespace `product`, with the worker's Role in `watched`; and k8s/signing,
 * filled in, moved to `product` the same way (applied first, on its own).
 */
async function writeOverlay(
  dir: string,
  product: string,
  watched: string,
): Promise<{ overlay: string; signing: string }> {
  await Deno.mkdir(`${dir}/inner`, { recursive: true });
  await Deno.mkdir(`${dir}/outer`, { recursive: true });
  await Deno.mkdir(`${dir}/signing-here`, { recursive: true });
  await writeSigning(`${dir}/signing`, "quickstart");
  await Deno.writeTextFile(
    `${dir}/signing-here/kustomization.yaml`,
    stringify({ resources: ["../signing"], namespace: product }),
  );
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
  return { overlay: `${dir}/outer`, signing: `${dir}/signing-here` };
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
      const { overlay, signing } = await writeOverlay(dir, product, watched);
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

      await t.step(
        "k8s/signing, filled in, applies first, as docs/deployment.md says",
        async () => {
          const keys = await kubectl(info!, ["apply", "-k", signing]);
          assertEquals(keys.code, 0, keys.stderr);
          assertEquals(keys.stderr, "", "no warnings");
          assertEquals(Object.values(applyReport(keys.stdout)), Array(4).fill("created"));
        },
      );

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
        "security: every Secret and ConfigMap key the pods require is there, signed both ways",
        async () => {
          for (const name of ["kuberollouttrigger-web", "kuberollouttrigger-worker"]) {
            const refs = keyRefs(await cluster.getDeployment(product, name));
            assertEquals(refs.length, 2, `${name}: a key for each direction`);
            for (const r of refs) {
              const path = `/api/v1/namespaces/${product}/${r.kind.toLowerCase()}s/${r.name}`;
              const got = await cluster.admin.request("GET", path);
              assertEquals(got.status, 200, `${name} ${r.env}: ${r.kind} ${r.name}`);
              const data = (got.json as { data: Record<string, string> }).data;
              assert(data[r.key], `${name} ${r.env}: ${r.kind} ${r.name} has no ${r.key}`);
            }
          }
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
