// Rendered manifests are indexed freely.
// deno-lint-ignore-file no-explicit-any
/**
 * The Helm chart (k8s/helm/kuberollouttrigger), with helm built from the
 * version pinned in tests/gotools/helm/go.mod: `helm lint` and `helm template`
 * for the default values and for a full set (ci/full-values.yaml), and the
 * rendered manifests checked against what must not drift from the rest of the
 * project: every env var is a setting of config/settings.ts for that mode, the
 * RBAC rules and the admission policy are those of k8s/, and every metric an
 * alert names is one the program exports. Under CI=true a missing Go fails
 * the run (tests/helpers/skip.ts).
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { ROOT } from "../helpers/program.ts";
import { CHART, helm, locateHelm, render } from "../helpers/helm.ts";
import { type Mode, SETTINGS } from "../../config/settings.ts";
import { parse, parseAllDocuments } from "yaml";

type Doc = Record<string, any>;

const FULL_VALUES = `${CHART}/ci/full-values.yaml`;
/** The one value the defaults lack: the chart renders no worker without a cluster name. */
const NAMED = ["--set", "worker.clusterName=krt-test"];

const find = (docs: Doc[], kind: string, name?: string) =>
  docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));

function shipped(path: string): Doc[] {
  return parseAllDocuments(Deno.readTextFileSync(`${ROOT}${path}`)).map((d) => d.toJS() as Doc);
}

const helmBin = await locateHelm();

Deno.test({
  name:
    "helm lint passes for the default values (with the cluster name) and the full set, with no warning",
  ignore: helmBin === undefined,
  async fn() {
    for (const args of [NAMED, ["-f", FULL_VALUES]]) {
      const out = await helm(helmBin!, ["lint", "--strict", CHART, ...args]);
      assertEquals(out.code, 0, out.stdout + out.stderr);
      assert(!/\[(WARNING|ERROR)\]/.test(out.stdout), out.stdout);
    }
  },
});

Deno.test({
  name: "the chart renders for the default values and the full set",
  ignore: helmBin === undefined,
  async fn(t) {
    const version = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).version;
    await t.step("defaults: web, worker, namespaced RBAC for default, the policy", async () => {
      const { docs } = await render(helmBin!, "krt", NAMED);
      assertEquals(
        docs.map((d) => `${d.kind}/${d.metadata.namespace ?? ""}/${d.metadata.name}`).sort(),
        [
          "Deployment/krt/kuberollouttrigger-web",
          "Deployment/krt/kuberollouttrigger-worker",
          "Role/default/kuberollouttrigger-worker",
          "RoleBinding/default/kuberollouttrigger-worker",
          "Service/krt/kuberollouttrigger-web",
          "ServiceAccount/krt/kuberollouttrigger-worker",
          "ValidatingAdmissionPolicy//kuberollouttrigger-worker-restart-only",
          "ValidatingAdmissionPolicyBinding//kuberollouttrigger-worker-restart-only",
        ],
      );
      const web = find(docs, "Deployment", "kuberollouttrigger-web")[0];
      assertEquals(
        web.spec.template.spec.containers[0].image,
        `ghcr.io/kuberollouttrigger/kuberollouttrigger:${version}`,
        "the image tag defaults to the release's version",
      );
      const worker = find(docs, "Deployment", "kuberollouttrigger-worker")[0];
      assertEquals(
        worker.spec.template.spec.containers[0].env.find((e: Doc) => e.name === "CLUSTER_NAME"),
        { name: "CLUSTER_NAME", value: "krt-test" },
      );
      const binding = find(docs, "RoleBinding")[0];
      assertEquals(binding.subjects, [{
        kind: "ServiceAccount",
        name: "kuberollouttrigger-worker",
        namespace: "krt",
      }]);
    });
    await t.step("full: digest pinning, Valkey secret, monitoring, quickstart Valkey", async () => {
      const { docs } = await render(helmBin!, "krt", ["-f", FULL_VALUES]);
      const worker = find(docs, "Deployment", "kuberollouttrigger-worker")[0];
      const container = worker.spec.template.spec.containers[0];
      assertMatch(
        container.image,
        /^ghcr\.io\/acme\/kuberollouttrigger:0\.1\.0@sha256:[0-9a-f]{64}$/,
      );
      assertEquals(
        container.env.find((e: Doc) => e.name === "VALKEY_PASSWORD").valueFrom,
        { secretKeyRef: { name: "valkey-auth", key: "password" } },
      );
      const web = find(docs, "Deployment", "kuberollouttrigger-web")[0].spec.template.spec;
      assertEquals(
        web.containers[0].env.find((e: Doc) => e.name === "GITHUB_ALLOWED_REPOSITORY_IDS")
          .valueFrom,
        { secretKeyRef: { name: "web-policy", key: "repository-ids" } },
        "any setting can come from a Secret",
      );
      assertEquals(find(docs, "Role").map((d) => d.metadata.namespace).sort(), ["billing", "shop"]);
      assertEquals(find(docs, "ServiceMonitor").length, 1);
      assertEquals(find(docs, "PodMonitor").length, 1);
      assertEquals(find(docs, "PrometheusRule").length, 1);
      assertEquals(find(docs, "Deployment", "kuberollouttrigger-valkey").length, 1);
    });
    await t.step(
      "a Valkey Cluster: both modes get VALKEY_CLUSTER_NODES and no VALKEY_ADDR",
      async () => {
        const { docs } = await render(helmBin!, "krt", [
          ...NAMED,
          "--set",
          "valkey.clusterNodes={clustercfg.example:6379,10.0.0.2:6379}",
        ]);
        for (const name of ["kuberollouttrigger-web", "kuberollouttrigger-worker"]) {
          const env = find(docs, "Deployment", name)[0].spec.template.spec.containers[0].env;
          assertEquals(
            env.find((e: Doc) => e.name === "VALKEY_CLUSTER_NODES")?.value,
            "clustercfg.example:6379,10.0.0.2:6379",
            name,
          );
          assert(!env.some((e: Doc) => e.name === "VALKEY_ADDR"), `${name} has VALKEY_ADDR`);
        }
      },
    );
    await t.step("cluster scope: one ClusterRole and binding, no Role", async () => {
      const { docs } = await render(helmBin!, "krt", [
        ...NAMED,
        "--set",
        "rbac.scope=cluster",
        "--set",
        "worker.watchNamespaces=null",
      ]);
      assertEquals(find(docs, "Role").length, 0);
      assertEquals(find(docs, "ClusterRole").length, 1);
      const worker = find(docs, "Deployment", "kuberollouttrigger-worker")[0];
      const env = worker.spec.template.spec.containers[0].env.map((e: Doc) => e.name);
      assert(!env.includes("WATCH_NAMESPACES"), "empty means every namespace");
    });
  },
});

Deno.test({
  name: "the chart refuses values that would install something broken, naming the value",
  ignore: helmBin === undefined,
  async fn() {
    const cases: [string[], RegExp][] = [
      [[], /worker\.clusterName is empty: name this Kubernetes cluster \(CLUSTER_NAME\)/],
      [["--set", "worker.clusterName=null"], /worker\.clusterName is empty/],
      [["--set", "worker.clusterName=prod eu"], /worker\.clusterName "prod eu" must be 1-63/],
      [[...NAMED, "--set", "worker.watchNamespaces=null"], /worker\.watchNamespaces is empty/],
      [[...NAMED, "--set", "rbac.scope=everywhere"], /rbac\.scope must be namespaced or cluster/],
      [[...NAMED, "--set", "image.digest=latest"], /image\.digest must be sha256:/],
      [
        [...NAMED, "--set", "valkey.addr=v:6379", "--set", "valkey.clusterNodes={a:7000}"],
        /valkey\.addr and valkey\.clusterNodes exclude each other/,
      ],
      [
        [
          ...NAMED,
          "--set",
          "valkey.username=u",
          "--set",
          "envFromSecrets.VALKEY_USERNAME.name=s",
          "--set",
          "envFromSecrets.VALKEY_USERNAME.key=k",
        ],
        /VALKEY_USERNAME is set both as a value and from a Secret/,
      ],
    ];
    for (const [args, message] of cases) {
      const out = await helm(helmBin!, ["template", "krt", CHART, ...args]);
      assertEquals(out.code, 1, `${args.join(" ")} renders: ${out.stdout.slice(0, 200)}`);
      assertMatch(out.stderr, message);
    }
  },
});

Deno.test({
  name:
    "the chart takes the cluster name as worker.clusterName, worker.env or a Secret, and web alone needs none",
  ignore: helmBin === undefined,
  async fn(t) {
    const clusterName = async (args: string[]) => {
      const { docs } = await render(helmBin!, "krt", args);
      const worker = find(docs, "Deployment", "kuberollouttrigger-worker")[0];
      return worker?.spec.template.spec.containers[0].env
        .find((e: Doc) => e.name === "CLUSTER_NAME");
    };
    await t.step("worker.env.CLUSTER_NAME", async () => {
      assertEquals(await clusterName(["--set", "worker.env.CLUSTER_NAME=prod-eu"]), {
        name: "CLUSTER_NAME",
        value: "prod-eu",
      });
    });
    await t.step("worker.envFromSecrets.CLUSTER_NAME", async () => {
      const found = await clusterName([
        "--set",
        "worker.envFromSecrets.CLUSTER_NAME.name=names",
        "--set",
        "worker.envFromSecrets.CLUSTER_NAME.key=cluster",
      ]);
      assertEquals(found.valueFrom, { secretKeyRef: { name: "names", key: "cluster" } });
    });
    await t.step("web.enabled only: no worker, no name needed", async () => {
      const { docs } = await render(helmBin!, "krt", ["--set", "worker.enabled=false"]);
      assertEquals(find(docs, "Deployment").map((d) => d.metadata.name), [
        "kuberollouttrigger-web",
      ]);
    });
  },
});

Deno.test({
  name:
    "the chart cannot drift from k8s/ and the settings table: env names, RBAC rules, the policy",
  ignore: helmBin === undefined,
  async fn(t) {
    const { docs } = await render(helmBin!, "krt", ["-f", FULL_VALUES]);
    const cluster = await render(helmBin!, "krt", [
      "-f",
      FULL_VALUES,
      "--set",
      "rbac.scope=cluster",
    ]);
    await t.step("every env var is a setting of its container's mode", () => {
      const byEnv = new Map(
        Object.values(SETTINGS).map((s) => [s.env, s.modes as readonly Mode[]]),
      );
      for (const mode of ["web", "worker"] as const) {
        const d = find(docs, "Deployment", `kuberollouttrigger-${mode}`)[0];
        const names = d.spec.template.spec.containers[0].env.map((e: Doc) => e.name as string);
        assert(names.length >= 8, `${mode} sets its settings`);
        assertEquals(new Set(names).size, names.length, `${mode}: no env var twice`);
        const unknown = names.filter((n: string) => !byEnv.get(n)?.includes(mode));
        assertEquals(unknown, [], `${mode}: env vars that are not ${mode} settings`);
      }
    });
    await t.step("every key of kustomize's settings ConfigMap is a setting", () => {
      const config = shipped("k8s/base/config.yaml")[0];
      const known = new Set(Object.values(SETTINGS).map((s) => s.env));
      const unknown = Object.keys(config.data).filter((k) => !known.has(k));
      assertEquals(unknown, [], "k8s/base/config.yaml keys that are not settings");
    });
    await t.step("the RBAC rules are k8s/rbac/'s, namespaced and cluster-wide", () => {
      const role = shipped("k8s/rbac/namespaced/rbac.yaml").find((d) => d.kind === "Role")!;
      for (const d of find(docs, "Role")) assertEquals(d.rules, role.rules);
      const clusterRole = shipped("k8s/rbac/cluster-wide/rbac.yaml")
        .find((d) => d.kind === "ClusterRole")!;
      assertEquals(find(cluster.docs, "ClusterRole")[0].rules, clusterRole.rules);
    });
    await t.step("the admission policy and binding are k8s/admission/'s", () => {
      for (const expected of shipped("k8s/admission/policy.yaml")) {
        const got = find(docs, expected.kind, expected.metadata.name);
        assertEquals(got.length, 1, expected.kind);
        assertEquals(got[0].spec, expected.spec, `${expected.kind} spec`);
      }
    });
    await t.step("pods run as k8s/base's do: security contexts, ports, probes", () => {
      for (const mode of ["web", "worker"] as const) {
        const base = shipped(`k8s/base/${mode}/deployment.yaml`)[0].spec.template.spec;
        const chart = find(docs, "Deployment", `kuberollouttrigger-${mode}`)[0].spec.template.spec;
        assertEquals(chart.securityContext, base.securityContext, `${mode} pod securityContext`);
        assertEquals(chart.automountServiceAccountToken, base.automountServiceAccountToken);
        assertEquals(chart.serviceAccountName, base.serviceAccountName);
        const [c, b] = [chart.containers[0], base.containers[0]];
        for (
          const field of ["securityContext", "ports", "args", "readinessProbe", "livenessProbe"]
        ) {
          assertEquals(c[field], b[field], `${mode} container ${field}`);
        }
      }
    });
    await t.step("every metric the PrometheusRule alerts on is one the program exports", () => {
      const exported = new Set<string>();
      for (const file of ["web/metrics.ts", "worker/metrics.ts"]) {
        const text = Deno.readTextFileSync(`${ROOT}${file}`);
        for (const [, name] of text.matchAll(/"(kuberollouttrigger_[a-z_]+)"/g)) exported.add(name);
      }
      const rule = find(docs, "PrometheusRule")[0];
      const exprs: string[] = rule.spec.groups.flatMap((g: Doc) => g.rules.map((r: Doc) => r.expr));
      assert(exprs.length >= 8, "the rule has the alerts docs/operations.md proposes");
      for (const expr of exprs) {
        for (const [name] of expr.matchAll(/kuberollouttrigger_[a-z_]+/g)) {
          assert(exported.has(name), `${name} (in ${expr}) is exported`);
        }
      }
    });
  },
});

Deno.test("the chart's version and appVersion are deno.json's version", () => {
  const chart = parse(Deno.readTextFileSync(`${CHART}/Chart.yaml`));
  const version = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).version;
  assertEquals(chart.version, version);
  assertEquals(chart.appVersion, version);
});
