// Rendered manifests are indexed freely.
// deno-lint-ignore-file no-explicit-any
/**
 * The Helm chart (k8s/helm/kuberollouttrigger), with helm built from the
 * version pinned in tests/gotools/helm/go.mod: `helm lint` and `helm template`
 * for the default values and for a full set (ci/full-values.yaml), and the
 * rendered manifests checked against what must not drift from the rest of the
 * project: every env var is a setting of config/settings.ts for that mode, the
 * RBAC rules and the admission policy are those of k8s/, and every metric an
 * alert names is one the program exports. values.schema.json refuses a table
 * of planted wrong values in both `helm lint --strict` and `helm template`;
 * the optional objects (disruption budgets, spread over nodes, NetworkPolicies,
 * the Ingress) render as their values say, and the security-relevant ones are
 * grouped under `security:`. Under CI=true a missing Go fails the run
 * (tests/helpers/skip.ts).
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { ROOT } from "../helpers/program.ts";
import {
  CHART,
  helm,
  locateHelm,
  render,
  renderNotes,
  reportKeyLine,
  signedArgs,
  SIGNING_OBJECTS,
} from "../helpers/helm.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { type Mode, SETTINGS } from "../../config/settings.ts";
import { parse, parseAllDocuments } from "yaml";

type Doc = Record<string, any>;

const FULL_VALUES = `${CHART}/ci/full-values.yaml`;
/** A worker cluster's report public key, as web's REPORT_VERIFY_KEYS takes it. */
const REPORT_KEY = reportKeyLine((await generateKeyPair()).publicPem);
/** The signing keys for both directions, the worker's cluster being `cluster`. */
const signed = (cluster: string) => signedArgs(cluster, REPORT_KEY);
/**
 * The values the defaults lack: the chart renders no worker without a cluster
 * name, and neither mode without its signing keys.
 */
const NAMED = ["--set", "worker.clusterName=krt-test", ...signed("krt-test")];

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
    await t.step(
      "defaults: web, worker, their disruption budgets, namespaced RBAC for default, the policy",
      async () => {
        const { docs } = await render(helmBin!, "krt", NAMED);
        assertEquals(
          docs.map((d) => `${d.kind}/${d.metadata.namespace ?? ""}/${d.metadata.name}`).sort(),
          [
            "Deployment/krt/kuberollouttrigger-web",
            "Deployment/krt/kuberollouttrigger-worker",
            "PodDisruptionBudget/krt/kuberollouttrigger-web",
            "PodDisruptionBudget/krt/kuberollouttrigger-worker",
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
      },
    );
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
      [
        signed("krt-test"),
        /worker\.clusterName is empty: name this Kubernetes cluster \(CLUSTER_NAME\)/,
      ],
      [
        ["--set", "worker.clusterName=null", ...signed("krt-test")],
        /worker\.clusterName is empty/,
      ],
      [
        ["--set", "worker.clusterName=prod eu", ...signed("krt-test")],
        /worker\.clusterName "prod eu" must be 1-63/,
      ],
      [[...NAMED, "--set", "worker.watchNamespaces=null"], /worker\.watchNamespaces is empty/],
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

/** The env entry `name` of the `mode` Deployment in `docs`, or undefined. */
function envOf(docs: Doc[], mode: "web" | "worker", name: string): Doc | undefined {
  const d = find(docs, "Deployment", `kuberollouttrigger-${mode}`)[0];
  return d?.spec.template.spec.containers[0].env.find((e: Doc) => e.name === name);
}

/** `helm template`'s error for `args`, asserting it fails with one line. */
async function refusal(args: string[]): Promise<string> {
  const out = await helm(helmBin!, ["template", "krt", CHART, ...args]);
  assertEquals(out.code, 1, `${args.join(" ")} renders: ${out.stdout.slice(0, 200)}`);
  const line = out.stderr.split("\n")[0];
  assertMatch(line, /^Error: execution error at \(kuberollouttrigger\/templates\/[\w-]+\.yaml:/);
  return line;
}

/** NAMED without the signing `settings` named (as in signedArgs). */
function without(...settings: string[]): string[] {
  let args = [...NAMED];
  for (const setting of settings) {
    const at = args.findIndex((a) => a.startsWith(`${setting}=`) || a.startsWith(`${setting}[`));
    assert(at > 0, setting);
    // signing.reports.verifyKeys is two --set-string pairs (cluster, key).
    const count = setting === "signing.reports.verifyKeys" ? 4 : 2;
    args = [...args.slice(0, at - 1), ...args.slice(at - 1 + count)];
  }
  return args;
}

const MISSING = {
  eventSigning: "signing.events.signingKeySecret.name (web's EVENT_SIGNING_KEY)",
  reportVerify: "signing.reports.verifyKeys (web's REPORT_VERIFY_KEYS)",
  eventVerify: "signing.events.verifyKeysConfigMap.name (the worker's EVENT_VERIFY_KEYS)",
  reportSigning: "signing.reports.signingKeySecret.name (the worker's REPORT_SIGNING_KEY)",
};
const OPT_OUT = "insecureAllowUnsignedMessages=true";

Deno.test({
  name:
    "security: the chart refuses to render unsigned messages in either direction, naming what to set and the opt-out",
  ignore: helmBin === undefined,
  async fn(t) {
    const expectMissing = async (args: string[], missing: string[]) => {
      const line = await refusal(args);
      assert(line.includes(`messages would be unsigned: set ${missing.join(", ")}, see`), line);
      assert(line.includes(`docs/deployment.md "Signing keys"`), line);
      assert(line.includes(`set ${OPT_OUT} (then anyone who can write to Valkey`), line);
    };
    await t.step("web and worker without any key: all four named", async () => {
      await expectMissing(["--set", "worker.clusterName=krt-test"], Object.values(MISSING));
    });
    await t.step("web alone: web's two", async () => {
      await expectMissing(["--set", "worker.enabled=false"], [
        MISSING.eventSigning,
        MISSING.reportVerify,
      ]);
    });
    await t.step("the worker alone: the worker's two", async () => {
      await expectMissing(["--set", "web.enabled=false", "--set", "worker.clusterName=krt-test"], [
        MISSING.eventVerify,
        MISSING.reportSigning,
      ]);
    });
    const each: [string, string][] = [
      ["signing.events.signingKeySecret.name", MISSING.eventSigning],
      ["signing.events.verifyKeysConfigMap.name", MISSING.eventVerify],
      ["signing.reports.signingKeySecret.name", MISSING.reportSigning],
    ];
    for (const [setting, missing] of each) {
      await t.step(`without ${setting} alone`, async () => {
        if (setting === "signing.events.signingKeySecret.name") {
          // Web refuses report keys without an event key before anything else (below).
          await expectMissing(without(setting, "signing.reports.verifyKeys"), [
            missing,
            MISSING.reportVerify,
          ]);
        } else {
          await expectMissing(without(setting), [missing]);
        }
      });
    }
    await t.step("without signing.reports.verifyKeys alone", async () => {
      await expectMissing(without("signing.reports.verifyKeys"), [MISSING.reportVerify]);
    });
    await t.step("a key given through envFromSecrets counts, a blank name does not", async () => {
      const args = [
        ...without("signing.reports.signingKeySecret.name"),
        "--set",
        "worker.envFromSecrets.REPORT_SIGNING_KEY.name=mine",
        "--set",
        "worker.envFromSecrets.REPORT_SIGNING_KEY.key=k",
      ];
      const { docs } = await render(helmBin!, "krt", args);
      assertEquals(envOf(docs, "worker", "REPORT_SIGNING_KEY")!.valueFrom, {
        secretKeyRef: { name: "mine", key: "k" },
      });
      await expectMissing(
        [
          ...without("signing.reports.signingKeySecret.name"),
          "--set-string",
          "signing.reports.signingKeySecret.name=",
        ],
        [MISSING.reportSigning],
      );
    });
  },
});

Deno.test({
  name: "security: the chart refuses signing values that would leak a key or fail at startup",
  ignore: helmBin === undefined,
  async fn() {
    const pem = (await generateKeyPair()).publicPem;
    const privateLine = (await generateKeyPair()).privatePem.split("\n")[1];
    const cases: [string, string[], RegExp][] = [
      [
        "a private key as a plain value (web.env)",
        [...NAMED, "--set", "web.env.EVENT_SIGNING_KEY=abc"],
        /EVENT_SIGNING_KEY is a private key: give it from a Secret .* never as a value in env or web\.env/,
      ],
      [
        "a private key as a plain value (env, both modes)",
        [...NAMED, "--set", "env.REPORT_SIGNING_KEY=abc"],
        /REPORT_SIGNING_KEY is a private key: give it from a Secret/,
      ],
      [
        "a private key as a plain value, even with the opt-out",
        [...NAMED, "--set", "worker.env.REPORT_SIGNING_KEY=abc", "--set", OPT_OUT],
        /REPORT_SIGNING_KEY is a private key/,
      ],
      [
        "report keys without an event signing key, even with the opt-out",
        [...NAMED, "--set-string", "signing.events.signingKeySecret.name=", "--set", OPT_OUT],
        /web's REPORT_VERIFY_KEYS needs EVENT_SIGNING_KEY too \(signing\.events\.signingKeySecret\.name\)/,
      ],
      [
        "the whole PEM block as a report key",
        [...NAMED, "--set-string", `signing.reports.verifyKeys[0].key=${pem}`],
        /the key of cluster "krt-test" must be one base64 line, the second line of `openssl pkey -in report-signing\.pem -pubout`/,
      ],
      [
        "a private key's line as a report key",
        [...NAMED, "--set-string", `signing.reports.verifyKeys[0].key=${privateLine}`],
        /the key of cluster "krt-test" must be one base64 line/,
      ],
      [
        "a report key for a cluster name the worker cannot have",
        [
          ...NAMED,
          "--set-string",
          "signing.reports.verifyKeys[1].cluster=prod eu",
          "--set-string",
          `signing.reports.verifyKeys[1].key=${REPORT_KEY}`,
        ],
        /signing\.reports\.verifyKeys: cluster "prod eu" must be 1-63 letters/,
      ],
      [
        "an entry of the string form without a key",
        [
          ...without("signing.reports.verifyKeys"),
          "--set-string",
          "signing.reports.verifyKeys=krt-test",
        ],
        /signing\.reports\.verifyKeys entry "krt-test" is not <cluster>=<public key>/,
      ],
      [
        "this release's worker has no report key",
        [...NAMED, "--set", "worker.clusterName=prod-us"],
        /worker\.clusterName "prod-us" has no key in signing\.reports\.verifyKeys \(krt-test\): web would reject this cluster's reports/,
      ],
      [
        "CLUSTERS names a cluster without a key",
        [...NAMED, "--set", "web.env.CLUSTERS=krt-test\\,prod-us"],
        /CLUSTERS names "prod-us", which has no key in signing\.reports\.verifyKeys/,
      ],
      [
        "report verify keys given two ways",
        [
          ...NAMED,
          "--set",
          `signing.reports.verifyKeysConfigMap.name=${SIGNING_OBJECTS.reportVerify.name}`,
        ],
        /signing\.reports\.verifyKeys and signing\.reports\.verifyKeysConfigMap exclude each other/,
      ],
      [
        "a signing setting both from a ConfigMap and a Secret",
        [
          ...NAMED,
          "--set",
          "worker.envFromSecrets.EVENT_VERIFY_KEYS.name=s",
          "--set",
          "worker.envFromSecrets.EVENT_VERIFY_KEYS.key=k",
        ],
        /EVENT_VERIFY_KEYS is set both from a ConfigMap and from a Secret: keep one/,
      ],
    ];
    for (const [what, args, message] of cases) {
      const line = await refusal(args);
      assertMatch(line, message, what);
    }
  },
});

/** web's REPORT_VERIFY_KEYS parser, the one the program runs. */
const REPORT_VERIFY_KEYS = Object.values(SETTINGS).find((s) => s.env === "REPORT_VERIFY_KEYS");

Deno.test({
  name: "the chart takes a report key exactly when web's REPORT_VERIFY_KEYS does",
  ignore: helmBin === undefined,
  async fn(t) {
    assert(REPORT_VERIFY_KEYS, "web has a REPORT_VERIFY_KEYS setting");
    const other = await generateKeyPair();
    const x = JSON.parse(other.publicJwk).x as string;
    const x25519 = "MCowBQYDK2VuAyEA" + REPORT_KEY.slice(16);
    const samples: [string, string][] = [
      ["the SPKI body line", reportKeyLine(other.publicPem)],
      ["a JWK's x", x],
      ["the whole PEM block", other.publicPem],
      ["the private key's line", other.privatePem.split("\n")[1]],
      ["an X25519 key", x25519],
      ["one character short", x.slice(1)],
    ];
    for (const [what, key] of samples) {
      await t.step(what, async () => {
        let webTakes = true;
        try {
          REPORT_VERIFY_KEYS.parse(`krt-test=${key}`);
        } catch {
          webTakes = false;
        }
        const out = await helm(helmBin!, [
          "template",
          "krt",
          CHART,
          ...NAMED,
          "--set-string",
          `signing.reports.verifyKeys[0].key=${key}`,
        ]);
        assertEquals(out.code === 0, webTakes, `web takes it: ${webTakes}; ${out.stderr}`);
      });
    }
  },
});

Deno.test({
  name:
    "security: with insecureAllowUnsignedMessages the chart renders without keys, and its notes warn",
  ignore: helmBin === undefined,
  async fn(t) {
    await t.step("no key at all: no signing env, and the notes name all four", async () => {
      const args = ["--set", "worker.clusterName=krt-test", "--set", OPT_OUT];
      const { docs } = await render(helmBin!, "krt", args);
      for (
        const [mode, name] of [
          ["web", "EVENT_SIGNING_KEY"],
          ["web", "REPORT_VERIFY_KEYS"],
          ["worker", "EVENT_VERIFY_KEYS"],
          ["worker", "REPORT_SIGNING_KEY"],
        ] as const
      ) {
        assertEquals(envOf(docs, mode, name), undefined, `${mode} ${name}`);
      }
      const notes = await renderNotes(helmBin!, args);
      assertMatch(
        notes,
        /\n\nWARNING: INSECURE, MESSAGES ARE NOT SIGNED \(insecureAllowUnsignedMessages=true\)\.\n/,
      );
      assert(notes.includes(`Missing: ${Object.values(MISSING).join(", ")}.`), notes);
      assertMatch(notes, /Anyone who can write to Valkey can restart every Deployment/);
    });
    await t.step(
      "events signed, reports not: the keys given are used, the rest named",
      async () => {
        const args = [
          ...without("signing.reports.signingKeySecret.name", "signing.reports.verifyKeys"),
          "--set",
          OPT_OUT,
        ];
        const { docs } = await render(helmBin!, "krt", args);
        assert(envOf(docs, "web", "EVENT_SIGNING_KEY")!.valueFrom.secretKeyRef);
        assert(envOf(docs, "worker", "EVENT_VERIFY_KEYS")!.valueFrom.configMapKeyRef);
        const notes = await renderNotes(helmBin!, args);
        assert(
          notes.includes(`Missing: ${MISSING.reportVerify}, ${MISSING.reportSigning}.`),
          notes,
        );
      },
    );
    await t.step(
      "signed: no warning; the opt-out with every key says it does nothing",
      async () => {
        assert(!/INSECURE|insecureAllow/.test(await renderNotes(helmBin!, NAMED)));
        const notes = await renderNotes(helmBin!, [...NAMED, "--set", OPT_OUT]);
        assert(!notes.includes("INSECURE"), notes);
        assertMatch(notes, /insecureAllowUnsignedMessages is set but every signing key is given/);
      },
    );
  },
});

Deno.test({
  name:
    "security: with keys, the signing settings come from secretKeyRef and configMapKeyRef, never inline",
  ignore: helmBin === undefined,
  async fn(t) {
    const o = SIGNING_OBJECTS;
    await t.step("the full set: each half where it belongs", async () => {
      const { docs, text } = await render(helmBin!, "krt", ["-f", FULL_VALUES]);
      assertEquals(envOf(docs, "web", "EVENT_SIGNING_KEY")!.valueFrom, {
        secretKeyRef: o.eventSigning,
      });
      assertEquals(envOf(docs, "worker", "EVENT_VERIFY_KEYS")!.valueFrom, {
        configMapKeyRef: o.eventVerify,
      });
      assertEquals(envOf(docs, "worker", "REPORT_SIGNING_KEY")!.valueFrom, {
        secretKeyRef: o.reportSigning,
      });
      const full = parse(Deno.readTextFileSync(FULL_VALUES));
      assertEquals(
        envOf(docs, "web", "REPORT_VERIFY_KEYS")!.value,
        full.signing.reports.verifyKeys.map((e: Doc) => `${e.cluster}=${e.key}`).join(","),
        "public keys only, inline, one entry per key (a cluster twice while it rotates)",
      );
      const parsed = REPORT_VERIFY_KEYS!.parse(envOf(docs, "web", "REPORT_VERIFY_KEYS")!.value);
      assertEquals(
        [...(parsed as Map<string, unknown[]>).entries()].map(([c, k]) => [c, k.length]),
        [["prod-eu", 2]],
        "web reads both keys of prod-eu",
      );
      for (
        const [mode, name] of [["web", "REPORT_SIGNING_KEY"], ["worker", "EVENT_SIGNING_KEY"], [
          "web",
          "EVENT_VERIFY_KEYS",
        ], ["worker", "REPORT_VERIFY_KEYS"]] as const
      ) {
        assertEquals(envOf(docs, mode, name), undefined, `${mode} has no ${name}`);
      }
      assert(!/PRIVATE KEY|"d":/.test(text), "no private key in the manifests");
      assertEquals(find(docs, "Secret").length, 0, "the chart makes no Secret");
    });
    await t.step("the values' default keys are the settings' env names", () => {
      const values = parse(Deno.readTextFileSync(`${CHART}/values.yaml`)).signing;
      const envs = new Set(Object.values(SETTINGS).map((s) => s.env));
      const keys = [
        values.events.signingKeySecret.key,
        values.events.verifyKeysConfigMap.key,
        values.reports.signingKeySecret.key,
        values.reports.verifyKeysConfigMap.key,
        values.reports.verifyKeysSecret.key,
      ];
      assertEquals(keys, [
        "EVENT_SIGNING_KEY",
        "EVENT_VERIFY_KEYS",
        "REPORT_SIGNING_KEY",
        "REPORT_VERIFY_KEYS",
        "REPORT_VERIFY_KEYS",
      ]);
      assertEquals(keys.filter((k) => !envs.has(k)), [], "keys that are not settings");
    });
    await t.step("web's report keys as a string, a ConfigMap or a Secret", async () => {
      const base = without("signing.reports.verifyKeys");
      const jwkX = "-0x04QoT6jxcMQ-ferOoR1tRpQGvv6YQV3XvU6D3Y_w";
      const asString = await render(helmBin!, "krt", [
        ...base,
        "--set-string",
        `signing.reports.verifyKeys=  krt-test=${REPORT_KEY}\n prod-us=${jwkX}  krt-test=${jwkX}\n`,
      ]);
      assertEquals(
        envOf(asString.docs, "web", "REPORT_VERIFY_KEYS")!.value,
        `krt-test=${REPORT_KEY},prod-us=${jwkX},krt-test=${jwkX}`,
      );
      const fromConfigMap = await render(helmBin!, "krt", [
        ...base,
        "--set",
        `signing.reports.verifyKeysConfigMap.name=${o.reportVerify.name}`,
      ]);
      assertEquals(envOf(fromConfigMap.docs, "web", "REPORT_VERIFY_KEYS")!.valueFrom, {
        configMapKeyRef: o.reportVerify,
      });
      const fromSecret = await render(helmBin!, "krt", [
        ...base,
        "--set",
        "signing.reports.verifyKeysSecret.name=report-keys",
        "--set",
        "signing.reports.verifyKeysSecret.key=keys",
      ]);
      assertEquals(envOf(fromSecret.docs, "web", "REPORT_VERIFY_KEYS")!.valueFrom, {
        secretKeyRef: { name: "report-keys", key: "keys" },
      });
    });
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
      assertEquals(
        await clusterName(["--set", "worker.env.CLUSTER_NAME=prod-eu", ...signed("prod-eu")]),
        {
          name: "CLUSTER_NAME",
          value: "prod-eu",
        },
      );
    });
    await t.step("worker.envFromSecrets.CLUSTER_NAME", async () => {
      const found = await clusterName([
        "--set",
        "worker.envFromSecrets.CLUSTER_NAME.name=names",
        "--set",
        "worker.envFromSecrets.CLUSTER_NAME.key=cluster",
        ...signed("prod-eu"),
      ]);
      assertEquals(found.valueFrom, { secretKeyRef: { name: "names", key: "cluster" } });
    });
    await t.step("web.enabled only: no worker, no name needed", async () => {
      const { docs } = await render(helmBin!, "krt", [
        "--set",
        "worker.enabled=false",
        ...signed("prod-eu"),
      ]);
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
    await t.step("the signing env is k8s/base's: the same objects and keys", async () => {
      // k8s/base takes web's report keys from k8s/signing's ConfigMap.
      const { docs: signedDocs } = await render(helmBin!, "krt", [
        "-f",
        FULL_VALUES,
        "--set",
        "signing.reports.verifyKeys=null",
        "--set",
        `signing.reports.verifyKeysConfigMap.name=${SIGNING_OBJECTS.reportVerify.name}`,
      ]);
      for (const mode of ["web", "worker"] as const) {
        const base = shipped(`k8s/base/${mode}/deployment.yaml`)[0].spec.template.spec;
        const refs = base.containers[0].env.filter((e: Doc) => e.valueFrom);
        assertEquals(refs.length, 2, `k8s/base ${mode}: a key for each direction`);
        for (const ref of refs) assertEquals(envOf(signedDocs, mode, ref.name), ref, mode);
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

/** `helm lint --strict` and `helm template` of NAMED plus `args`: both must refuse, quoting `message`. */
async function schemaRefusal(args: string[], message: RegExp, what: string): Promise<void> {
  const [lint, template] = await Promise.all([
    helm(helmBin!, ["lint", "--strict", CHART, ...NAMED, ...args]),
    helm(helmBin!, ["template", "krt", CHART, ...NAMED, ...args]),
  ]);
  assertEquals(lint.code, 1, `${what}: helm lint passes`);
  assertMatch(lint.stdout + lint.stderr, message, `${what}: helm lint`);
  assertEquals(template.code, 1, `${what}: helm template renders`);
  assertMatch(
    template.stderr,
    /^Error: values don't meet the specifications of the schema\(s\)/m,
    `${what}: refused by the schema, before any template`,
  );
  assertMatch(template.stderr, message, `${what}: helm template`);
}

Deno.test({
  name:
    "values.schema.json refuses wrong types and misspelt keys of the chart's own, in helm lint --strict and helm template",
  ignore: helmBin === undefined,
  async fn(t) {
    const cases: [string, string[], RegExp][] = [
      [
        "a word for replicas",
        ["--set", "web.replicas=two"],
        /'\/web\/replicas': got string, want integer/,
      ],
      ["negative replicas", ["--set", "worker.replicas=-1"], /'\/worker\/replicas': minimum/],
      [
        "yes for a boolean",
        ["--set", "valkey.tls=yes"],
        /'\/valkey\/tls': got string, want boolean/,
      ],
      [
        "the opt-out as a string",
        ["--set-string", "insecureAllowUnsignedMessages=true"],
        /'\/insecureAllowUnsignedMessages': got string, want boolean/,
      ],
      [
        "on for a boolean",
        ["--set", "networkPolicy.enabled=on"],
        /'\/networkPolicy\/enabled': got string, want boolean/,
      ],
      [
        "a scope that is neither",
        ["--set", "rbac.scope=everywhere"],
        /'\/rbac\/scope': value must be one of/,
      ],
      [
        "a digest that is a tag",
        ["--set", "image.digest=latest"],
        /'\/image\/digest': '[^']*' does not match pattern/,
      ],
      [
        "an unknown log level",
        ["--set", "logLevel=verbose"],
        /'\/logLevel': 'verbose' does not match pattern/,
      ],
      [
        "a port out of range",
        ["--set", "web.service.port=70000"],
        /'\/web\/service\/port': maximum/,
      ],
      [
        "an ExternalName Service",
        ["--set", "web.service.type=ExternalName"],
        /'\/web\/service\/type': value must be one of/,
      ],
      [
        "a number as a label",
        ["--set", "web.podLabels.version=2"],
        /'\/web\/podLabels\/version': got number, want string/,
      ],
      [
        "a CIDR without its prefix",
        ["--set", "networkPolicy.apiServer.cidrs={10.0.0.1}"],
        /'\/networkPolicy\/apiServer\/cidrs\/0': '10\.0\.0\.1' does not match pattern/,
      ],
      [
        "a port by name",
        ["--set", "networkPolicy.valkey.ports={redis}"],
        /'\/networkPolicy\/valkey\/ports\/0': got string, want integer/,
      ],
      [
        "no port at all",
        ["--set-json", "networkPolicy.apiServer.ports=[]"],
        /'\/networkPolicy\/apiServer\/ports': minItems/,
      ],
      [
        "half as a budget",
        ["--set", "web.podDisruptionBudget.maxUnavailable=half"],
        /'\/web\/podDisruptionBudget\/maxUnavailable'/,
      ],
      [
        "an Ingress path without its slash",
        ["--set", "web.ingress.paths={event}"],
        /'\/web\/ingress\/paths\/0': 'event' does not match pattern/,
      ],
      [
        "a misspelt key",
        ["--set", "web.replica=3"],
        /'\/web': additional properties 'replica' not allowed/,
      ],
      [
        "a misspelt top-level key",
        ["--set", "valkeyy.addr=v:6379"],
        /at '': additional properties 'valkeyy' not allowed/,
      ],
      [
        "a misspelt key of a reference",
        ["--set", "valkey.passwordSecret.nam=auth"],
        /'\/valkey\/passwordSecret': additional properties 'nam' not allowed/,
      ],
      [
        "a Secret reference with a field the chart drops",
        [
          "--set",
          "envFromSecrets.TOKEN.name=s",
          "--set",
          "envFromSecrets.TOKEN.key=k",
          "--set",
          "envFromSecrets.TOKEN.optional=true",
        ],
        /'\/envFromSecrets\/TOKEN': additional properties 'optional' not allowed/,
      ],
      [
        "hosts for host",
        ["--set", "web.ingress.hosts={a.example}"],
        /'\/web\/ingress': additional properties 'hosts' not allowed/,
      ],
      [
        "a map for a list",
        ["--set", "allowedImagePrefixes.ghcr=io"],
        /'\/allowedImagePrefixes': got object, want array/,
      ],
    ];
    for (const [what, args, message] of cases) {
      await t.step(what, () => schemaRefusal(args, message, what));
    }
  },
});

Deno.test({
  name:
    "values.schema.json leaves open what Kubernetes takes as it is: resources, probes, scheduling, peers, env and label maps",
  ignore: helmBin === undefined,
  async fn() {
    const { docs } = await render(helmBin!, "krt", [
      ...NAMED,
      "--set",
      "web.resources.requests.cpu=1",
      "--set",
      "web.readinessProbe.timeoutSeconds=3",
      "--set",
      "web.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
      "--set",
      "web.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
      "--set",
      "worker.tolerations[0].operator=Exists",
      "--set",
      "worker.nodeSelector.pool=ops",
      "--set",
      "web.podAnnotations.example\\.com/any=thing",
      "--set",
      "env.VALKEY_TIMEOUT=3",
      "--set",
      "worker.env.DRY_RUN=true",
      "--set",
      "global.anything=1",
    ]);
    const web = find(docs, "Deployment", "kuberollouttrigger-web")[0].spec.template.spec;
    assertEquals(web.containers[0].resources.requests.cpu, 1);
    assertEquals(web.containers[0].readinessProbe.timeoutSeconds, 3);
    assertEquals(envOf(docs, "web", "VALKEY_TIMEOUT"), { name: "VALKEY_TIMEOUT", value: "3" });
    assertEquals(envOf(docs, "worker", "DRY_RUN"), { name: "DRY_RUN", value: "true" });
  },
});

/** The Deployment of `mode` in `docs`. */
const deploymentOf = (docs: Doc[], mode: "web" | "worker") =>
  find(docs, "Deployment", `kuberollouttrigger-${mode}`)[0];

/** Whether a label selector's matchLabels (all the chart writes) select `labels`. */
const selects = (selector: Doc, labels: Doc) =>
  Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
  selector.matchExpressions === undefined;

/**
 * What kube-linter's no-anti-affinity check reads (pkg/templates/antiaffinity):
 * with replicas > 1, a podAntiAffinity term, preferred or required, over
 * kubernetes.io/hostname whose selector matches the pod's own labels.
 */
function hasHostAntiAffinity(deployment: Doc): boolean {
  const pod = deployment.spec.template;
  const anti = pod.spec.affinity?.podAntiAffinity;
  const terms = [
    ...(anti?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p: Doc) =>
      p.podAffinityTerm
    ),
    ...(anti?.requiredDuringSchedulingIgnoredDuringExecution ?? []),
  ];
  return terms.some((term: Doc) =>
    term.topologyKey === "kubernetes.io/hostname" &&
    selects(term.labelSelector, pod.metadata.labels)
  );
}

Deno.test({
  name:
    "with replicas > 1 the chart spreads each workload over nodes and keeps a disruption budget, unless told otherwise",
  ignore: helmBin === undefined,
  async fn(t) {
    await t.step(
      "defaults: a soft spread and anti-affinity over hostnames, as kube-linter asks",
      async () => {
        const { docs } = await render(helmBin!, "krt", NAMED);
        for (const mode of ["web", "worker"] as const) {
          const d = deploymentOf(docs, mode);
          assertEquals(d.spec.template.spec.topologySpreadConstraints, [{
            maxSkew: 1,
            topologyKey: "kubernetes.io/hostname",
            whenUnsatisfiable: "ScheduleAnyway",
            labelSelector: { matchLabels: d.spec.selector.matchLabels },
          }], mode);
          assert(hasHostAntiAffinity(d), `${mode}: kube-linter's no-anti-affinity would flag it`);
          assertEquals(
            d.spec.template.spec.affinity.podAntiAffinity
              .requiredDuringSchedulingIgnoredDuringExecution,
            undefined,
            `${mode}: preferred only, so a one-node cluster still runs every replica`,
          );
          const pdb = find(docs, "PodDisruptionBudget", `kuberollouttrigger-${mode}`)[0];
          assertEquals(pdb.spec, {
            maxUnavailable: 1,
            unhealthyPodEvictionPolicy: "AlwaysAllow",
            selector: d.spec.selector,
          }, mode);
        }
      },
    );
    await t.step("one replica: no spread and no budget (it would block every drain)", async () => {
      const { docs } = await render(helmBin!, "krt", [
        ...NAMED,
        "--set",
        "web.replicas=1",
        "--set",
        "worker.replicas=1",
      ]);
      for (const mode of ["web", "worker"] as const) {
        const spec = deploymentOf(docs, mode).spec.template.spec;
        assertEquals([spec.topologySpreadConstraints, spec.affinity], [undefined, undefined], mode);
      }
      assertEquals(find(docs, "PodDisruptionBudget"), []);
    });
    await t.step(
      "spreadAcrossNodes=false and podDisruptionBudget.enabled=false turn them off",
      async () => {
        const { docs } = await render(helmBin!, "krt", [
          ...NAMED,
          "--set",
          "web.spreadAcrossNodes=false",
          "--set",
          "worker.podDisruptionBudget.enabled=false",
        ]);
        const web = deploymentOf(docs, "web").spec.template.spec;
        assertEquals([web.topologySpreadConstraints, web.affinity], [undefined, undefined]);
        assert(deploymentOf(docs, "worker").spec.template.spec.topologySpreadConstraints);
        assertEquals(find(docs, "PodDisruptionBudget").map((d) => d.metadata.name), [
          "kuberollouttrigger-web",
        ]);
      },
    );
    await t.step(
      "your own constraints and anti-affinity replace the defaults; node affinity joins them",
      async () => {
        const full = parse(Deno.readTextFileSync(FULL_VALUES));
        const { docs } = await render(helmBin!, "krt", [
          "-f",
          FULL_VALUES,
          "--set",
          "web.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey=topology.kubernetes.io/zone",
          "--set",
          "web.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchLabels.team=platform",
        ]);
        const web = deploymentOf(docs, "web").spec.template.spec;
        assertEquals(web.topologySpreadConstraints, full.web.topologySpreadConstraints);
        assertEquals(
          web.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution,
          undefined,
        );
        const worker = deploymentOf(docs, "worker");
        assertEquals(
          worker.spec.template.spec.affinity.nodeAffinity,
          full.worker.affinity.nodeAffinity,
        );
        assert(hasHostAntiAffinity(worker), "the default anti-affinity next to the node affinity");
        assertEquals(
          find(docs, "PodDisruptionBudget", "kuberollouttrigger-web")[0].spec.maxUnavailable,
          "34%",
        );
      },
    );
    await t.step("no budget for a workload that is not rendered", async () => {
      const { docs } = await render(helmBin!, "krt", [
        "--set",
        "worker.enabled=false",
        ...signed("krt-test"),
      ]);
      assertEquals(find(docs, "PodDisruptionBudget").map((d) => d.metadata.name), [
        "kuberollouttrigger-web",
      ]);
    });
  },
});

/** The args that make NetworkPolicies render: the API server's and Valkey's addresses. */
const NETWORK = [
  ...NAMED,
  "--set",
  "networkPolicy.enabled=true",
  "--set",
  "networkPolicy.apiServer.cidrs={10.0.0.10/32}",
  "--set",
  "networkPolicy.valkey.cidrs={10.20.0.5/32}",
];
const DNS_RULE = {
  to: [{
    namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
    podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
  }],
  ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }],
};
const VALKEY_RULE = {
  to: [{ ipBlock: { cidr: "10.20.0.5/32" } }],
  ports: [{ protocol: "TCP", port: 6379 }],
};
const QUICKSTART_RULE = {
  to: [{
    podSelector: {
      matchLabels: {
        "app.kubernetes.io/name": "kuberollouttrigger",
        "app.kubernetes.io/component": "valkey",
      },
    },
  }],
  ports: [{ protocol: "TCP", port: 6379 }],
};

Deno.test({
  name:
    "security: the NetworkPolicies let each pod accept its own port only and reach DNS, Valkey and (web) HTTPS or (worker) the API server only",
  ignore: helmBin === undefined,
  async fn(t) {
    await t.step("off by default", async () => {
      assertEquals(find((await render(helmBin!, "krt", NAMED)).docs, "NetworkPolicy"), []);
    });
    await t.step("web and the worker, each rule as values name it", async () => {
      const { docs } = await render(helmBin!, "krt", NETWORK);
      assertEquals(find(docs, "NetworkPolicy").map((d) => d.metadata.name).sort(), [
        "kuberollouttrigger-web",
        "kuberollouttrigger-worker",
      ]);
      const policy = (mode: "web" | "worker") =>
        find(docs, "NetworkPolicy", `kuberollouttrigger-${mode}`)[0].spec;
      for (const mode of ["web", "worker"] as const) {
        assertEquals(policy(mode).podSelector, deploymentOf(docs, mode).spec.selector, mode);
        assertEquals(policy(mode).policyTypes, ["Ingress", "Egress"], mode);
      }
      assertEquals(policy("web").ingress, [{ ports: [{ protocol: "TCP", port: 8080 }] }]);
      assertEquals(policy("web").egress, [
        DNS_RULE,
        VALKEY_RULE,
        {
          to: [{ ipBlock: { cidr: "0.0.0.0/0" } }, { ipBlock: { cidr: "::/0" } }],
          ports: [{ protocol: "TCP", port: 443 }],
        },
      ]);
      assertEquals(policy("worker").ingress, [{ ports: [{ protocol: "TCP", port: 8081 }] }]);
      assertEquals(policy("worker").egress, [
        DNS_RULE,
        {
          to: [{ ipBlock: { cidr: "10.0.0.10/32" } }],
          ports: [{ protocol: "TCP", port: 443 }, { protocol: "TCP", port: 6443 }],
        },
        VALKEY_RULE,
      ]);
      const ports = (mode: "web" | "worker") =>
        deploymentOf(docs, mode).spec.template.spec.containers[0].ports.map((p: Doc) =>
          p.containerPort
        );
      assertEquals(
        [ports("web"), ports("worker")],
        [[8080], [8081]],
        "the ports the policies open",
      );
    });
    await t.step(
      "webFrom and metricsFrom limit who connects; Valkey by selectors and ports",
      async () => {
        const ingressNs = {
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ingress" } },
        };
        const monitoringNs = {
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } },
        };
        const { docs } = await render(helmBin!, "krt", [
          ...NETWORK,
          "--set",
          "networkPolicy.webFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=ingress",
          "--set",
          "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
          "--set",
          "networkPolicy.valkey.cidrs=null",
          "--set",
          "networkPolicy.valkey.podSelector.app=valkey",
          "--set",
          "networkPolicy.valkey.namespaceSelector.team=data",
          "--set",
          "networkPolicy.valkey.ports={6379,26379}",
        ]);
        const policy = (mode: string) =>
          find(docs, "NetworkPolicy", `kuberollouttrigger-${mode}`)[0].spec;
        assertEquals(policy("web").ingress, [{
          from: [ingressNs, monitoringNs],
          ports: [{ protocol: "TCP", port: 8080 }],
        }]);
        assertEquals(policy("worker").ingress, [{
          from: [monitoringNs],
          ports: [{ protocol: "TCP", port: 8081 }],
        }]);
        assertEquals(policy("worker").egress[2], {
          to: [{
            podSelector: { matchLabels: { app: "valkey" } },
            namespaceSelector: { matchLabels: { team: "data" } },
          }],
          ports: [{ protocol: "TCP", port: 6379 }, { protocol: "TCP", port: 26379 }],
        });
      },
    );
    await t.step(
      "the quickstart Valkey: reached on 6379, from web and the worker only, reaching nothing",
      async () => {
        const { docs } = await render(helmBin!, "krt", [
          ...NAMED,
          "--set",
          "networkPolicy.enabled=true",
          "--set",
          "networkPolicy.apiServer.cidrs={10.0.0.10/32}",
          "--set",
          "valkey.quickstart.enabled=true",
        ]);
        const policy = (mode: string) =>
          find(docs, "NetworkPolicy", `kuberollouttrigger-${mode}`)[0].spec;
        assertEquals(policy("web").egress[1], QUICKSTART_RULE);
        assertEquals(policy("worker").egress[2], QUICKSTART_RULE);
        const valkey = policy("valkey");
        assertEquals(valkey.podSelector, QUICKSTART_RULE.to[0].podSelector);
        assertEquals(valkey.policyTypes, ["Ingress", "Egress"]);
        assertEquals(valkey.egress, undefined, "no egress rule: it opens no connection");
        assertEquals(valkey.ingress, [{
          from: ["web", "worker"].map((mode) => ({
            podSelector: deploymentOf(docs, mode as "web").spec.selector,
          })),
          ports: [{ protocol: "TCP", port: 6379 }],
        }]);
      },
    );
    await t.step(
      "every egress rule names its peers and ports (no rule opens everything)",
      async () => {
        const { docs } = await render(helmBin!, "krt", ["-f", FULL_VALUES]);
        const policies = find(docs, "NetworkPolicy");
        assertEquals(policies.length, 3);
        for (const p of policies) {
          for (const rule of p.spec.egress ?? []) {
            assert(
              rule.to?.length > 0 && rule.ports?.length > 0,
              `${p.metadata.name}: ${JSON.stringify(rule)}`,
            );
          }
        }
      },
    );
    await t.step("refused: no API server for the worker, no Valkey for either", async () => {
      assertMatch(
        await refusal([
          ...NAMED,
          "--set",
          "networkPolicy.enabled=true",
          "--set",
          "networkPolicy.valkey.cidrs={10.20.0.5/32}",
        ]),
        /networkPolicy\.apiServer\.cidrs is empty: the worker could not reach the API server/,
      );
      assertMatch(
        await refusal([
          ...NAMED,
          "--set",
          "networkPolicy.enabled=true",
          "--set",
          "networkPolicy.apiServer.cidrs={10.0.0.10/32}",
        ]),
        /networkPolicy\.valkey names no Valkey/,
      );
      const webOnly = await render(helmBin!, "krt", [
        "--set",
        "worker.enabled=false",
        ...signed("krt-test"),
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.valkey.cidrs={10.20.0.5/32}",
      ]);
      assertEquals(find(webOnly.docs, "NetworkPolicy").map((d) => d.metadata.name), [
        "kuberollouttrigger-web",
      ]);
    });
    await t.step(
      "refused: webFrom limits web's port while the ServiceMonitor has no metricsFrom",
      async () => {
        assertMatch(
          await refusal([
            ...NETWORK,
            "--set",
            "networkPolicy.webFrom[0].namespaceSelector.matchLabels.ingress=yes",
            "--set",
            "metrics.serviceMonitor.enabled=true",
          ]),
          /networkPolicy\.metricsFrom is empty: the ServiceMonitor's scrapes would be refused/,
        );
      },
    );
    await t.step("dns: null allows port 53 to any address (NodeLocal DNSCache)", async () => {
      const { docs } = await render(helmBin!, "krt", [
        ...NETWORK,
        "--set",
        "networkPolicy.dns=null",
      ]);
      const worker = find(docs, "NetworkPolicy", "kuberollouttrigger-worker")[0];
      assertEquals(worker.spec.egress[0], {
        ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }],
      });
    });
  },
});

Deno.test({
  name:
    "values written as before the schema still render: a comma-separated string where a list is joined, a log level in any case",
  ignore: helmBin === undefined,
  async fn() {
    const { docs } = await render(helmBin!, "krt", [
      ...NAMED,
      "--set",
      "allowedImagePrefixes=ghcr.io/acme\\,ghcr.io/other",
      "--set",
      "web.oidc.allowedRepositories=acme/app",
      "--set",
      "logLevel=DEBUG",
    ]);
    const env = (mode: "web" | "worker") =>
      Object.fromEntries(
        deploymentOf(docs, mode).spec.template.spec.containers[0].env
          .filter((e: { value?: string }) => e.value !== undefined)
          .map((e: { name: string; value: string }) => [e.name, e.value]),
      );
    assertEquals(env("web").ALLOWED_IMAGE_PREFIX, "ghcr.io/acme,ghcr.io/other");
    assertEquals(env("web").GITHUB_ALLOWED_REPOSITORIES, "acme/app");
    assertEquals(env("worker").LOG_LEVEL, "DEBUG");
  },
});

Deno.test({
  name: "security: the Ingress routes only the event paths to web, over TLS, and is off by default",
  ignore: helmBin === undefined,
  async fn(t) {
    await t.step("off by default", async () => {
      assertEquals(find((await render(helmBin!, "krt", NAMED)).docs, "Ingress"), []);
    });
    await t.step("the full set: class, host, TLS, annotations, the event paths", async () => {
      const { docs } = await render(helmBin!, "krt", ["-f", FULL_VALUES]);
      const [ingress] = find(docs, "Ingress", "kuberollouttrigger-web");
      assertEquals(ingress.metadata.annotations, {
        "cert-manager.io/cluster-issuer": "letsencrypt",
      });
      const backend = { service: { name: "kuberollouttrigger-web", port: { name: "http" } } };
      assertEquals(ingress.spec, {
        ingressClassName: "nginx",
        tls: [{ hosts: ["rollouts.acme.example"], secretName: "rollouts-tls" }],
        rules: [{
          host: "rollouts.acme.example",
          http: {
            paths: [
              { path: "/event", pathType: "Prefix", backend },
              { path: "/v1/event", pathType: "Prefix", backend },
            ],
          },
        }],
      });
      const service = find(docs, "Service", "kuberollouttrigger-web")[0];
      assertEquals(service.spec.ports[0].name, "http", "the port the Ingress names");
      // Prefix matches whole path elements (Kubernetes Ingress, pathType Prefix).
      const routed = (path: string) =>
        ingress.spec.rules[0].http.paths.some((p: Doc) =>
          path === p.path || path.startsWith(`${p.path}/`)
        );
      for (const path of ["/event", "/event/0b7c", "/v1/event", "/v1/event/0b7c"]) {
        assert(routed(path), path);
      }
      for (const path of ["/metrics", "/healthz", "/readyz", "/", "/events"]) {
        assert(!routed(path), path);
      }
    });
    await t.step("TLS without a Secret of its own, or off; no host is refused", async () => {
      const on = ["--set", "web.ingress.enabled=true", "--set", "web.ingress.host=r.example"];
      const { docs } = await render(helmBin!, "krt", [...NAMED, ...on]);
      const [ingress] = find(docs, "Ingress");
      assertEquals(ingress.spec.tls, [{ hosts: ["r.example"] }]);
      assertEquals(ingress.spec.ingressClassName, undefined);
      assertEquals(ingress.metadata.annotations, undefined);
      const plain = await render(helmBin!, "krt", [
        ...NAMED,
        ...on,
        "--set",
        "web.ingress.tls.enabled=false",
      ]);
      assertEquals(find(plain.docs, "Ingress")[0].spec.tls, undefined);
      assertMatch(
        await refusal([...NAMED, "--set", "web.ingress.enabled=true"]),
        /web\.ingress\.host is empty/,
      );
      const workerOnly = await render(helmBin!, "krt", [
        ...NAMED,
        ...on,
        "--set",
        "web.enabled=false",
      ]);
      assertEquals(find(workerOnly.docs, "Ingress"), []);
    });
  },
});
