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
  assertMatch(line, /^Error: execution error at \(kuberollouttrigger\/templates\/\w+\.yaml:/);
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
      [
        "an opt-out that is not a boolean",
        [...NAMED, "--set-string", "insecureAllowUnsignedMessages=true"],
        /insecureAllowUnsignedMessages must be true or false, not "true"/,
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
