/**
 * What a kubeconfig selects (current context, its cluster and user, across
 * merged files) and what the worker refuses of it, each with one line saying
 * what to change. loadKubeAccess() proves the same through real files in
 * config_test.ts.
 */

import { assertEquals, assertThrows } from "../../helpers/assert.ts";
import { AppError } from "../../../shared/errors.ts";
import { mergeKubeconfigs } from "../../../worker/kube/kubeconfig_merge.ts";
import { parseKubeconfigYaml } from "../../../worker/kube/kubeconfig_yaml.ts";
import {
  checkServer,
  refuseUnsupported,
  selectContext,
} from "../../../worker/kube/kubeconfig_select.ts";

const merged = (...texts: string[]) =>
  mergeKubeconfigs(
    texts.map((text, i) => ({ path: `/k${i}`, doc: parseKubeconfigYaml(text, `/k${i}`) })),
  );

Deno.test("selectContext() finds the current context's cluster and user across merged files", () => {
  const selected = selectContext(merged(
    "current-context: dev\nusers: [{ name: u, user: { token: t } }]\n",
    "contexts: [{ name: dev, context: { cluster: c, user: u } }]\nclusters: [{ name: c, cluster: { server: 'https://k:6443/' } }]\n",
  ));
  assertEquals(selected.contextName, "dev");
  assertEquals(selected.server, "https://k:6443");
  assertEquals(selected.user?.where, "Kubeconfig /k0: users[0].user");
  assertEquals(selected.cluster.where, "Kubeconfig /k1: clusters[0].cluster");
});

Deno.test("selectContext() says what is missing, naming every file and context", async (t) => {
  await t.step("no current-context", () => {
    assertThrows(() => selectContext(merged("contexts: [{ name: a, context: {} }]\n", "{}\n")), {
      instanceOf: AppError,
      message:
        /^Kubeconfig \/k0:\/k1 has no usable current-context \(contexts: a\): set current-context$/,
    });
  });
  await t.step("a context without a cluster", () => {
    assertThrows(
      () => selectContext(merged("current-context: a\ncontexts: [{ name: a, context: {} }]\n")),
      { message: /context a names no cluster with a server/ },
    );
  });
});

Deno.test("checkServer() takes https (http only to this machine) and never quotes a password", async (t) => {
  await t.step("accepted", () => {
    assertEquals(checkServer("https://k.example:6443/", "s"), "https://k.example:6443");
    assertEquals(checkServer("http://127.0.0.1:8001", "s"), "http://127.0.0.1:8001");
  });
  const refused: [string, RegExp][] = [
    ["http://k.example", /must be an https:\/\/ URL/],
    [
      "https://u:pw-secret@k.example",
      /carries a user or password in the URL; the worker refuses it$/,
    ],
    ["https://k.example/?a=1", /must not have a query or fragment/],
    ["not a url", /is not a URL/],
  ];
  for (const [raw, message] of refused) {
    await t.step(`refused: ${raw.replace("pw-secret", "…")}`, () => {
      const err = assertThrows(() => checkServer(raw, "s"), { code: "ERR_KUBE", message });
      assertEquals(err.message.includes("pw-secret"), false);
    });
  }
});

Deno.test("refuseUnsupported() refuses each setting the worker cannot honour, in one line", async (t) => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>, RegExp][] = [
    [
      "insecure-skip-tls-verify",
      { "insecure-skip-tls-verify": true },
      {},
      /insecure-skip-tls-verify/,
    ],
    [
      "proxy-url",
      { "proxy-url": "http://p" },
      {},
      /sets proxy-url, which the worker does not support/,
    ],
    ["an auth provider", {}, { "auth-provider": { name: "gcp" } }, /auth-provider/],
    ["exec beside a client certificate", {}, {
      exec: { command: "x" },
      "client-certificate-data": "QQ==",
    }, /and also exec, which the worker cannot use together/],
    ["basic auth", {}, { password: "p" }, /basic auth/],
    ["impersonation", {}, { as: "admin" }, /^The kubeconfig user sets as \(impersonation\)/],
  ];
  for (const [name, cluster, user, message] of cases) {
    await t.step(name, () => {
      assertThrows(() => refuseUnsupported(cluster, user), { code: "ERR_KUBE", message });
    });
  }
  await t.step(
    "exec alone, or an empty token beside it (client-go reads it as none), is fine",
    () => {
      refuseUnsupported({}, { exec: { command: "x" } });
      refuseUnsupported({}, { exec: { command: "x" }, token: "" });
    },
  );
});
