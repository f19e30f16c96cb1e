/**
 * The chart on the real test API server: `helm template` output applied with
 * `kubectl apply` (client-side, as docs/deployment.md says) into a namespace
 * that enforces and warns on Pod Security "restricted" — no error, no
 * warning, and a second apply leaves every object `unchanged`. The full set
 * has every optional object on (disruption budgets, NetworkPolicies, the
 * Ingress, spread over nodes, monitoring); other combinations of the options
 * pass a server-side dry run with no warning. Then the real
 * worker, configured by the chart's env (its signing keys read from the
 * Secret and ConfigMap the chart names, as the kubelet would) and running as
 * the chart's ServiceAccount with the chart's RBAC and admission policy,
 * restarts a matching Deployment when an event web's key signed arrives on
 * Valkey.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import {
  applyReport,
  CLUSTER_SCOPED,
  dryRunPodTemplates,
  kubectl,
  serviceAccountApi,
  waitForDeploymentAccess,
} from "../helpers/kubectl.ts";
import { type Program, startWorker } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { appendEvent, startValkey } from "../helpers/valkey.ts";
import { locateHelm, render, reportKeyLine, signedArgs, SIGNING_OBJECTS } from "../helpers/helm.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { parseSigningKey } from "../../shared/event_keys.ts";
import { createSigner } from "../../web/event_signer.ts";
import { stringify } from "yaml";

const info = requireControlPlane("the Helm chart install test");
const hasKubectl = Deno.env.get("KRT_TEST_KUBECTL") !== undefined;
const helmBin = info && hasKubectl ? await locateHelm() : undefined;
const FULL_VALUES = "k8s/helm/kuberollouttrigger/ci/full-values.yaml";
const RESTARTED_AT = "kubectl.kubernetes.io/restartedAt";
/**
 * kubectl's patch for a PodDisruptionBudget is never empty (policy/v1's
 * spec.selector has the patch strategy "replace"), so a re-apply says
 * "configured" though the spec stays as it was: the test checks the
 * generation instead.
 */
const BUDGET = /^poddisruptionbudget\.policy\//;
const RESTRICTED = {
  "pod-security.kubernetes.io/enforce": "restricted",
  "pod-security.kubernetes.io/warn": "restricted",
  "pod-security.kubernetes.io/audit": "restricted",
};

/** Just enough of the Prometheus Operator's CRDs for the chart's monitoring objects. */
function monitoringCrds(): string {
  const crd = (kind: string, plural: string) => ({
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.monitoring.coreos.com` },
    spec: {
      group: "monitoring.coreos.com",
      scope: "Namespaced",
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [{
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
        },
      }],
    },
  });
  return [
    crd("ServiceMonitor", "servicemonitors"),
    crd("PodMonitor", "podmonitors"),
    crd("PrometheusRule", "prometheusrules"),
  ].map((d) => stringify(d)).join("---\n");
}

Deno.test({
  name:
    "the chart's manifests apply under Pod Security restricted without warnings, re-apply unchanged, and its worker restarts a matching Deployment",
  ignore: info === undefined || !hasKubectl || helmBin === undefined || withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    const programs: Program[] = [];
    const disposals: (() => Promise<void>)[] = [];
    try {
      const product = await cluster.namespace("krt-chart", RESTRICTED);
      const watched = await cluster.namespace("krt-chart-apps");
      const deleted = await kubectl(info!, ["delete", "--ignore-not-found", ...CLUSTER_SCOPED]);
      assertEquals(deleted.code, 0, deleted.stderr);
      const crds = await kubectl(info!, ["apply", "-f", "-"], monitoringCrds());
      assertEquals(crds.code, 0, crds.stderr);
      const established = await kubectl(info!, [
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
      ]);
      assertEquals(established.code, 0, established.stderr);

      // The full set of values, with namespaces and Valkey that exist here.
      const here = [
        "--set",
        `worker.watchNamespaces={${watched}}`,
        "--set",
        "rbac.scope=namespaced",
      ];
      const full = await render(helmBin!, product, ["-f", FULL_VALUES, ...here]);
      await t.step("the full set has every optional object on", () => {
        const kinds = full.docs.map((d) => d.kind);
        const count = (kind: string) => kinds.filter((k) => k === kind).length;
        assertEquals(
          [count("PodDisruptionBudget"), count("NetworkPolicy"), count("Ingress")],
          [2, 3, 1],
        );
        for (const d of full.docs.filter((d) => d.kind === "Deployment")) {
          const spec = d.spec.template.spec;
          if (d.spec.replicas < 2) continue;
          assert(spec.topologySpreadConstraints?.length, `${d.metadata.name} spreads`);
          assert(spec.affinity?.podAntiAffinity, `${d.metadata.name} has anti-affinity`);
        }
      });
      let objects: string[] = [];
      await t.step("the first apply creates every object, with no warning", async () => {
        const first = await kubectl(info!, ["apply", "-f", "-"], full.text);
        assertEquals(first.code, 0, first.stderr);
        assertEquals(first.stderr, "", "no warnings");
        const report = applyReport(first.stdout);
        objects = Object.keys(report);
        assertEquals(objects.length, full.docs.length, first.stdout);
        assertEquals(Object.values(report).filter((v) => v !== "created"), [], first.stdout);
      });
      await t.step(
        "a second apply changes nothing: every object unchanged, the budgets' generation kept",
        async () => {
          const budgets = full.docs.filter((d) => d.kind === "PodDisruptionBudget")
            .map((d) => d.metadata.name as string);
          const versions = () =>
            Promise.all(budgets.map(async (name) => {
              const got = await cluster.admin.request(
                "GET",
                `/apis/policy/v1/namespaces/${product}/poddisruptionbudgets/${name}`,
              );
              assertEquals(got.status, 200, name);
              // The generation moves with the spec only: the disruption controller's status
              // writes leave it.
              const { metadata, spec } = got.json as {
                metadata: { generation: number };
                spec: unknown;
              };
              return { generation: metadata.generation, spec };
            }));
          const before = await versions();
          const again = await kubectl(info!, ["apply", "-f", "-"], full.text);
          assertEquals(again.code, 0, again.stderr);
          assertEquals(again.stderr, "");
          const changed = Object.entries(applyReport(again.stdout))
            .filter(([object, verb]) =>
              verb !== "unchanged" && !(BUDGET.test(object) && verb === "configured")
            );
          assertEquals(changed, [], "objects a re-apply would change");
          assertEquals(await versions(), before, 'a budget\'s "configured" changed its spec');
        },
      );
      await t.step("every pod template passes a dry run as a restricted Pod", async () => {
        await dryRunPodTemplates(cluster, product, [
          "kuberollouttrigger-web",
          "kuberollouttrigger-worker",
          "kuberollouttrigger-valkey",
        ]);
      });
      await t.step(
        "other combinations of the options pass a server-side dry run, with no warning",
        async (t) => {
          const keys = signedArgs("krt-test", reportKeyLine((await generateKeyPair()).publicPem));
          const named = [...here, "--set", "worker.clusterName=krt-test", ...keys];
          const combinations: [string, string[]][] = [
            ["the defaults: budgets and spread on", named],
            ["one replica each: no budget, no spread", [
              ...named,
              "--set",
              "web.replicas=1",
              "--set",
              "worker.replicas=1",
            ]],
            ["NetworkPolicies without the quickstart Valkey, an Ingress with no class or Secret", [
              ...named,
              "--set",
              "networkPolicy.enabled=true",
              "--set",
              "networkPolicy.apiServer.cidrs={10.0.0.10/32}",
              "--set",
              "networkPolicy.valkey.cidrs={10.20.0.5/32}",
              "--set",
              "web.ingress.enabled=true",
              "--set",
              "web.ingress.host=rollouts.example.com",
            ]],
            ["web only, spread and budget off, an Ingress without TLS", [
              ...here,
              ...keys,
              "--set",
              "worker.enabled=false",
              "--set",
              "web.spreadAcrossNodes=false",
              "--set",
              "web.podDisruptionBudget.enabled=false",
              "--set",
              "web.ingress.enabled=true",
              "--set",
              "web.ingress.host=rollouts.example.com",
              "--set",
              "web.ingress.tls.enabled=false",
            ]],
          ];
          for (const [what, args] of combinations) {
            await t.step(what, async () => {
              const rendered = await render(helmBin!, product, args);
              const dry = await kubectl(
                info!,
                ["apply", "--dry-run=server", "-f", "-"],
                rendered.text,
              );
              assertEquals(dry.code, 0, dry.stderr);
              assertEquals(dry.stderr, "", "no warnings");
              assertEquals(Object.keys(applyReport(dry.stdout)).length, rendered.docs.length);
            });
          }
        },
      );

      await t.step(
        "the worker as the chart configures it restarts a matching Deployment",
        async () => {
          // The keys a user makes (docs/deployment.md, "Signing keys"), in the objects
          // k8s/signing would make, in the release's namespace.
          const eventKeys = await generateKeyPair();
          const reportKeys = await generateKeyPair();
          const o = SIGNING_OBJECTS;
          const objects = [
            ["Secret", o.eventSigning, eventKeys.privatePem],
            ["ConfigMap", o.eventVerify, eventKeys.publicPem],
            ["Secret", o.reportSigning, reportKeys.privatePem],
          ] as const;
          const made = await kubectl(
            info!,
            ["apply", "-f", "-"],
            objects.map(([kind, ref, value]) =>
              stringify({
                apiVersion: "v1",
                kind,
                metadata: { name: ref.name, namespace: product },
                [kind === "Secret" ? "stringData" : "data"]: { [ref.key]: value },
              })
            ).join("---\n"),
          );
          assertEquals(made.code, 0, made.stderr);

          // The defaults with this test's Valkey and keys: the env a plain install gives the worker.
          const plain = await render(helmBin!, product, [
            ...here,
            "--set",
            `valkey.addr=${valkey.addr}`,
            "--set",
            "allowedImagePrefixes={ghcr.io/acme}",
            "--set",
            "worker.clusterName=chart-test",
            ...signedArgs("chart-test", reportKeyLine(reportKeys.publicPem)),
          ]);
          const deployment = plain.docs.find((d) =>
            d.kind === "Deployment" && d.metadata.name === "kuberollouttrigger-worker"
          )!;
          const container = deployment.spec.template.spec.containers[0];
          const env: Record<string, string> = {};
          for (const e of container.env) {
            if (e.value !== undefined) {
              env[e.name] = e.value;
              continue;
            }
            // Security: the keys come by reference only, read as the kubelet reads them.
            const ref = e.valueFrom.secretKeyRef ?? e.valueFrom.configMapKeyRef;
            const kind = e.valueFrom.secretKeyRef ? "secrets" : "configmaps";
            assert(!ref.optional, `${e.name} is required`);
            const got = await cluster.admin.request(
              "GET",
              `/api/v1/namespaces/${product}/${kind}/${ref.name}`,
            );
            assertEquals(got.status, 200, `${e.name}: ${kind}/${ref.name}`);
            const value = (got.json as { data: Record<string, string> }).data[ref.key];
            env[e.name] = kind === "secrets" ? atob(value) : value;
          }
          assertEquals(
            container.env.filter((e: { valueFrom?: unknown }) => e.valueFrom)
              .map((e: { name: string }) => e.name).sort(),
            ["EVENT_VERIFY_KEYS", "REPORT_SIGNING_KEY"],
            "the worker's keys come from a ConfigMap and a Secret, every other setting is a value",
          );
          assertEquals(env.EVENT_VERIFY_KEYS, eventKeys.publicPem);
          assertEquals(env.REPORT_SIGNING_KEY, reportKeys.privatePem);
          assertEquals(env.WATCH_NAMESPACES, watched);
          assertEquals(container.args, ["worker"]);

          const sa = { namespace: product, name: deployment.spec.template.spec.serviceAccountName };
          for (const verb of ["list", "watch", "get", "patch"]) {
            await waitForDeploymentAccess(cluster, sa, watched, verb);
          }
          const access = await serviceAccountApi(cluster, sa.namespace, sa.name);
          disposals.push(access.dispose);
          await cluster.createDeployment(
            deploymentManifest(watched, "app", [{ image: "ghcr.io/acme/app:dev" }]),
          );
          await cluster.createDeployment(
            deploymentManifest(watched, "other", [{ image: "ghcr.io/acme/other:dev" }]),
          );
          const worker = await startWorker(env, access.kubeconfig);
          programs.push(worker.program);
          await worker.program.waitForLog((l) => l.msg === "inventory synced", 20_000);

          // Signed with web's key, as web publishes it; the worker drops anything else.
          const signer = await createSigner(parseSigningKey(eventKeys.privatePem)!);
          const id = crypto.randomUUID();
          const { message } = await signer.signEvent(
            JSON.stringify({
              id,
              time: new Date().toISOString(),
              image: "ghcr.io/acme/app",
              tags: ["dev"],
            }),
            "a".repeat(64),
          );
          await appendEvent(valkey, message);
          const line = await worker.program.waitForLog(
            (l) => l.msg === "event handled" && l.event_id === id,
            15_000,
          );
          assertEquals((line.restarted as unknown[]).length, 1, JSON.stringify(line));
          const restarted = await eventually("the restart annotation", async () => {
            const d = await cluster.getDeployment(watched, "app");
            return d.spec.template.metadata.annotations?.[RESTARTED_AT];
          });
          assert(!Number.isNaN(Date.parse(restarted)), restarted);
          const other = await cluster.getDeployment(watched, "other");
          assertEquals(other.spec.template.metadata.annotations?.[RESTARTED_AT], undefined);
        },
      );
    } finally {
      for (const program of programs) await program.stop();
      for (const dispose of disposals) await dispose().catch(() => {});
      await kubectl(info!, ["delete", "--ignore-not-found", ...CLUSTER_SCOPED.slice(2)]);
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
