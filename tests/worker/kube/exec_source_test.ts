/**
 * Credentials from an exec plugin, cached: one run however many requests ask
 * at once, a new run a little before they expire, one run per 401 however
 * many requests it refused, and a client of its own for a plugin's client
 * certificate. The plugin is a stand-in function here; a real script runs in
 * config_test.ts and tests/e2e/kubeconfig_test.ts.
 */

import { assert, assertEquals, assertRejects } from "../../helpers/assert.ts";
import { openssl } from "../../helpers/certificates.ts";
import { execInfo, type ExecPlugin } from "../../../worker/kube/exec_credential.ts";
import { createExecSource, RENEW_BEFORE_MS } from "../../../worker/kube/exec_source.ts";
import { createLogger } from "../../../lib/log.ts";

const V1 = "client.authentication.k8s.io/v1";
const PLUGIN: ExecPlugin = {
  command: "fake-plugin",
  args: [],
  env: {},
  apiVersion: V1,
  execInfo: execInfo(V1, undefined),
  where: "Kubeconfig /k: users[0].user.exec",
};
const T0 = Date.UTC(2030, 0, 1);

/** A stand-in plugin: each run answers `status(n)` after a tick; counts runs. */
function fakeRun(status: (n: number) => Record<string, unknown>, stderr = "") {
  let runs = 0;
  const run = async () => {
    runs++;
    const n = runs;
    await new Promise((r) => setTimeout(r, 5));
    return {
      stdout: JSON.stringify({ apiVersion: V1, kind: "ExecCredential", status: status(n) }),
      stderr,
    };
  };
  return { run, runs: () => runs };
}

function source(run: ReturnType<typeof fakeRun>["run"], now: () => number, lines: string[] = []) {
  const baseClient = Deno.createHttpClient({});
  const logger = createLogger({ level: "debug", write: (line) => lines.push(line) });
  return {
    baseClient,
    source: createExecSource({ plugin: PLUGIN, run, baseClient, now, logger }),
  };
}

Deno.test("createExecSource() runs the plugin once for many requests at the same time", async () => {
  const plugin = fakeRun((n) => ({ token: `tok-${n}` }));
  const { source: s, baseClient } = source(plugin.run, () => T0);
  const all = await Promise.all(Array.from({ length: 50 }, () => s.credentials()));
  assertEquals(plugin.runs(), 1);
  assert(all.every((c) => c.authorization === "Bearer tok-1" && c.httpClient === baseClient));
  await s.credentials();
  assertEquals(plugin.runs(), 1, "without an expiry, the credentials are kept");
  baseClient.close();
});

Deno.test("createExecSource() runs the plugin again a little before the credentials expire", async () => {
  let now = T0;
  const expiry = new Date(T0 + 10 * 60_000).toISOString();
  const plugin = fakeRun((n) => ({ token: `tok-${n}`, expirationTimestamp: expiry }));
  const { source: s, baseClient } = source(plugin.run, () => now);
  assertEquals((await s.credentials()).authorization, "Bearer tok-1");
  now = T0 + 10 * 60_000 - RENEW_BEFORE_MS - 1;
  assertEquals((await s.credentials()).authorization, "Bearer tok-1", "still fresh");
  now += 1;
  const renewed = await Promise.all(Array.from({ length: 20 }, () => s.credentials()));
  assertEquals(plugin.runs(), 2, "one run for all requests that found them due");
  assert(renewed.every((c) => c.authorization === "Bearer tok-2"));
  baseClient.close();
});

Deno.test("createExecSource() runs the plugin once per 401, however many requests it refused", async () => {
  const plugin = fakeRun((n) => ({ token: `tok-${n}` }));
  const { source: s, baseClient } = source(plugin.run, () => T0);
  const refused = await s.credentials();
  const renewed = await Promise.all(Array.from({ length: 20 }, () => s.renew(refused)));
  assertEquals(plugin.runs(), 2);
  assert(renewed.every((c) => c.authorization === "Bearer tok-2"));
  // A request that got its 401 late, with the old credentials, gets the new ones without a run.
  assertEquals((await s.renew(refused)).authorization, "Bearer tok-2");
  assertEquals(plugin.runs(), 2);
  baseClient.close();
});

Deno.test("createExecSource() passes a failure to every waiting request and runs again next time", async () => {
  let fail = true;
  const run = async () => {
    await new Promise((r) => setTimeout(r, 5));
    if (fail) throw new Error("plugin failed");
    return {
      stdout: JSON.stringify({ apiVersion: V1, kind: "ExecCredential", status: { token: "t" } }),
      stderr: "",
    };
  };
  const { source: s, baseClient } = source(run, () => T0);
  const results = await Promise.allSettled([s.credentials(), s.credentials()]);
  assertEquals(results.map((r) => r.status), ["rejected", "rejected"]);
  fail = false;
  assertEquals((await s.credentials()).authorization, "Bearer t");
  baseClient.close();
});

Deno.test("security: createExecSource() logs the expiry and stderr, never the credential", async () => {
  const token = `tok_${crypto.randomUUID()}`;
  const plugin = fakeRun(
    () => ({ token, expirationTimestamp: "2030-01-01T01:00:00Z" }),
    `debug: ${"x".repeat(140)} got ${token}\n`,
  );
  const lines: string[] = [];
  const { source: s, baseClient } = source(plugin.run, () => T0, lines);
  await s.credentials();
  const logs = lines.map((l) => JSON.parse(l));
  assertEquals(logs.map((l) => [l.msg, l.stderr ?? l.expires]), [
    ["the exec plugin wrote to stderr", `debug: ${"x".repeat(140)} got [redacted]`],
    ["kubernetes credentials from the exec plugin", "2030-01-01T01:00:00.000Z"],
  ]);
  assert(!lines.join("\n").includes(token), "the token reached the log");
  baseClient.close();
});

Deno.test("createExecSource() uses a plugin's client certificate through a client of its own", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "krt-exec-cert-" });
  try {
    const pair = async (name: string) => {
      await openssl([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        `/CN=${name}`,
        "-keyout",
        `${dir}/${name}.key`,
        "-out",
        `${dir}/${name}.crt`,
      ]);
      return {
        cert: await Deno.readTextFile(`${dir}/${name}.crt`),
        key: await Deno.readTextFile(`${dir}/${name}.key`),
      };
    };
    const [a, b] = await Promise.all([pair("a"), pair("b")]);
    await t.step("each new certificate gets a new client; no Authorization header", async () => {
      const pairs = [a, b];
      const plugin = fakeRun((n) => ({
        clientCertificateData: pairs[(n - 1) % 2].cert,
        clientKeyData: pairs[(n - 1) % 2].key,
      }));
      const { source: s, baseClient } = source(plugin.run, () => T0);
      const first = await s.credentials();
      assertEquals(first.authorization, undefined);
      assert(first.httpClient !== baseClient, "a client of its own");
      const second = await s.renew(first);
      assert(second.httpClient !== first.httpClient, "a new client");
      await s.renew(second); // the first client is closed now; the second kept for its requests
      baseClient.close();
    });
    await t.step("security: a key that is not the certificate's is named, not quoted", async () => {
      const plugin = fakeRun(() => ({ clientCertificateData: a.cert, clientKeyData: b.key }));
      const { source: s, baseClient } = source(plugin.run, () => T0);
      const err = await assertRejects(() => s.credentials(), {
        code: "ERR_KUBE",
        message:
          /^Exec plugin "fake-plugin" status\.clientKeyData is not the private key of Exec plugin "fake-plugin" status\.clientCertificateData$/,
      });
      assert(!err.message.includes("PRIVATE KEY"));
      baseClient.close();
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
