/**
 * The credential plugin protocol without running anything: the `exec` entry
 * checked, KUBERNETES_EXEC_INFO as kubectl sets it, and the ExecCredential a
 * plugin prints read and checked, never quoted.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../../helpers/assert.ts";
import { AppError } from "../../../shared/errors.ts";
import {
  type ExecClusterInfo,
  execInfo,
  type ExecPlugin,
  parseExecCredential,
  parseExecPlugin,
} from "../../../worker/kube/exec_credential.ts";
import { mergeKubeconfigs } from "../../../worker/kube/kubeconfig_merge.ts";
import { parseKubeconfigYaml } from "../../../worker/kube/kubeconfig_yaml.ts";
import { CA } from "../../helpers/kubeconfig_cases.ts";

const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
const V1 = "client.authentication.k8s.io/v1";
const V1BETA1 = "client.authentication.k8s.io/v1beta1";
const CLUSTER: ExecClusterInfo = { server: "https://k.example:6443" };

function pluginOf(exec: string, cluster = CLUSTER): ExecPlugin {
  const doc = parseKubeconfigYaml(
    `users:\n  - name: u\n    user:\n      exec: ${exec}\n`,
    "/k/config",
  );
  return parseExecPlugin(
    mergeKubeconfigs([{ path: "/k/config", doc }]).find("users", "u")!,
    cluster,
  );
}

Deno.test("parseExecPlugin() reads the exec entry as client-go does", async (t) => {
  await t.step("a name stays a name (looked up on PATH); args and env are kept", () => {
    const plugin = pluginOf(
      `{ apiVersion: ${V1}, command: gke-gcloud-auth-plugin, args: [a, b], env: [{ name: X, value: "1" }], interactiveMode: Never }`,
    );
    assertEquals(plugin.command, "gke-gcloud-auth-plugin");
    assertEquals(plugin.args, ["a", "b"]);
    assertEquals(plugin.env, { X: "1" });
    assertEquals(plugin.where, "Kubeconfig /k/config: users[0].user.exec");
  });
  await t.step("a relative command with a '/' is relative to the kubeconfig's folder", () => {
    assertEquals(pluginOf(`{ apiVersion: ${V1}, command: bin/plugin }`).command, "/k/bin/plugin");
    assertEquals(pluginOf(`{ apiVersion: ${V1}, command: /opt/p }`).command, "/opt/p");
  });
  await t.step("v1beta1 and IfAvailable (the default) are accepted", () => {
    assertEquals(pluginOf(`{ apiVersion: ${V1BETA1}, command: aws }`).apiVersion, V1BETA1);
  });
  const refused: [string, string, RegExp][] = [
    [
      "interactiveMode Always",
      `{ apiVersion: ${V1}, command: x, interactiveMode: Always }`,
      /interactiveMode: Always, but the worker has no terminal/,
    ],
    [
      "an unknown interactiveMode",
      `{ apiVersion: ${V1}, command: x, interactiveMode: Sometimes }`,
      /interactiveMode must be Never, IfAvailable or Always/,
    ],
    [
      "v1alpha1",
      `{ apiVersion: client.authentication.k8s.io/v1alpha1, command: x }`,
      /exec\.apiVersion must be client\.authentication\.k8s\.io\/v1 or .*v1beta1 \(found another\)/,
    ],
    ["no apiVersion", `{ command: x }`, /apiVersion must be .* \(found nothing\)/],
    ["no command", `{ apiVersion: ${V1} }`, /users\[0\]\.user\.exec\.command is missing/],
    [
      "args that are not text",
      `{ apiVersion: ${V1}, command: x, args: [{ a: 1 }] }`,
      /exec\.args must be a list of text/,
    ],
    [
      "an env entry without a name",
      `{ apiVersion: ${V1}, command: x, env: [{ value: ${SECRET} }] }`,
      /exec\.env\[0\]\.name must be a variable name/,
    ],
  ];
  for (const [name, exec, message] of refused) {
    await t.step(`refuses ${name}`, () => {
      const err = assertThrows(() => pluginOf(exec), {
        instanceOf: AppError,
        code: "ERR_KUBE",
        message,
      });
      assert(!err.message.includes(SECRET), err.message);
    });
  }
});

Deno.test("execInfo() is KUBERNETES_EXEC_INFO as kubectl sets it", async (t) => {
  await t.step("without provideClusterInfo: no spec.cluster, interactive false", () => {
    assertEquals(JSON.parse(execInfo(V1, undefined)), {
      apiVersion: V1,
      kind: "ExecCredential",
      spec: { interactive: false },
    });
  });
  await t.step("with provideClusterInfo: server, CA data and the exec extension's config", () => {
    const plugin = pluginOf(`{ apiVersion: ${V1BETA1}, command: x, provideClusterInfo: true }`, {
      ...CLUSTER,
      caPem: CA,
      extensions: [{ name: "client.authentication.k8s.io/exec", extension: { audience: "a" } }],
    });
    assertEquals(JSON.parse(plugin.execInfo), {
      apiVersion: V1BETA1,
      kind: "ExecCredential",
      spec: {
        interactive: false,
        cluster: {
          server: CLUSTER.server,
          "certificate-authority-data": btoa(CA),
          config: { audience: "a" },
        },
      },
    });
  });
  await t.step("provideClusterInfo false gives no cluster", () => {
    const plugin = pluginOf(`{ apiVersion: ${V1}, command: x, provideClusterInfo: false }`);
    assertEquals(JSON.parse(plugin.execInfo).spec, { interactive: false });
  });
});

Deno.test("parseExecCredential() reads a token or a client certificate and the expiry", async (t) => {
  const plugin = pluginOf(`{ apiVersion: ${V1}, command: p }`);
  const credential = (status: unknown, apiVersion = V1) =>
    JSON.stringify({ apiVersion, kind: "ExecCredential", status });
  await t.step("a token with an expiry", () => {
    assertEquals(
      parseExecCredential(
        credential({ token: "t", expirationTimestamp: "2030-01-01T00:00:00Z" }),
        plugin,
      ),
      {
        token: "t",
        clientCertificate: undefined,
        clientKey: undefined,
        expiresAt: Date.UTC(2030, 0, 1),
      },
    );
  });
  await t.step("a certificate and key without an expiry", () => {
    const parsed = parseExecCredential(
      credential({ clientCertificateData: "C", clientKeyData: "K" }),
      plugin,
    );
    assertEquals([parsed.clientCertificate, parsed.clientKey, parsed.expiresAt], [
      "C",
      "K",
      undefined,
    ]);
  });
});

Deno.test("security: parseExecCredential() refuses a bad answer without quoting it", async (t) => {
  const plugin = pluginOf(`{ apiVersion: ${V1}, command: p }`);
  const cases: [string, string, RegExp][] = [
    [
      "output that is not JSON",
      `token=${SECRET}`,
      /Exec plugin "p" printed no ExecCredential: its output \(\d+ characters\) is not JSON/,
    ],
    [
      "JSON of another kind",
      JSON.stringify({ kind: "Secret", token: SECRET }),
      /not an ExecCredential/,
    ],
    [
      "another apiVersion",
      JSON.stringify({
        kind: "ExecCredential",
        apiVersion: "client.authentication.k8s.io/v1beta1",
        status: { token: SECRET },
      }),
      /answered with apiVersion client\.authentication\.k8s\.io\/v1beta1, but the kubeconfig asks for .*\/v1/,
    ],
    [
      "an apiVersion that is not a word",
      JSON.stringify({
        kind: "ExecCredential",
        apiVersion: `v1 ${SECRET}`,
        status: { token: SECRET },
      }),
      /answered with apiVersion another/,
    ],
    [
      "no status",
      JSON.stringify({ kind: "ExecCredential", apiVersion: V1, token: SECRET }),
      /without a status/,
    ],
    [
      "a status without a credential",
      JSON.stringify({ kind: "ExecCredential", apiVersion: V1, status: { tok: SECRET } }),
      /neither status\.token nor/,
    ],
    [
      "a certificate without its key",
      JSON.stringify({
        kind: "ExecCredential",
        apiVersion: V1,
        status: { clientCertificateData: SECRET },
      }),
      /only one of status\.clientCertificateData and status\.clientKeyData/,
    ],
    [
      "a token that is a number",
      JSON.stringify({ kind: "ExecCredential", apiVersion: V1, status: { token: 5 } }),
      /status\.token must be text/,
    ],
    [
      "an expiry that is not a time",
      JSON.stringify({
        kind: "ExecCredential",
        apiVersion: V1,
        status: { token: SECRET, expirationTimestamp: `x${SECRET}` },
      }),
      /expirationTimestamp is not an RFC 3339 time/,
    ],
  ];
  for (const [name, stdout, message] of cases) {
    await t.step(name, () => {
      const err = assertThrows(() => parseExecCredential(stdout, plugin), {
        instanceOf: AppError,
        code: "ERR_KUBE",
        message,
      });
      assert(!err.message.includes(SECRET), err.message);
      assertMatch(err.message, /^[^\n]+$/);
    });
  }
});
