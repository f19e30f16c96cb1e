/**
 * Signed cluster reports in process (shared/report_signature.ts,
 * shared/signing_key.ts, REPORT_VERIFY_KEYS' parser in shared/event_keys.ts):
 * the envelope a worker writes and its reader, and the key setting web reads,
 * whose errors never quote a key. Verification is web/report_verifier.ts'
 * (tests/web/report_verifier_test.ts); the real programs are proven in
 * tests/e2e/signed_reports_test.ts.
 */

import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { clusterName } from "../../config/worker_settings.ts";
import { parseClusterKeys, parseSigningKey } from "../../shared/event_keys.ts";
import {
  encodeSignedReport,
  openReport,
  REPORT_CONTEXT,
  reportBytes,
} from "../../shared/report_signature.ts";
import { importSigningKey } from "../../shared/signing_key.ts";

const ID = "0b7d7a56-3c1e-4c8e-9d6a-2f5e8f7a9b10";
const [east, west] = await Promise.all([generateKeyPair(), generateKeyPair()]);

Deno.test("a signed report opens to its exact bytes, key id and a signature that verifies for its event only", async () => {
  const key = await importSigningKey(parseSigningKey(east.privatePem)!, "REPORT_SIGNING_KEY");
  const json = '{"cluster":"east","state":"succeeded"}';
  const opened = openReport(encodeSignedReport(json, key.keyId, key.sign(reportBytes(ID, json))));
  assert(opened.signed);
  assertEquals([opened.report, opened.kid], [json, key.keyId]);
  const pub = await crypto.subtle.importKey("raw", key.publicKey, "Ed25519", false, ["verify"]);
  assert(await crypto.subtle.verify("Ed25519", pub, opened.sig, reportBytes(ID, json)));
  const other = reportBytes(crypto.randomUUID(), json);
  assertEquals(await crypto.subtle.verify("Ed25519", pub, opened.sig, other), false);
  assertEquals(new TextDecoder().decode(reportBytes(ID, json)), `${REPORT_CONTEXT}${ID}\n${json}`);
});

Deno.test("openReport() reads a bare report as unsigned and refuses a malformed envelope without quoting it", async (t) => {
  const kid = "k".repeat(43);
  const sig = "s".repeat(86);
  await t.step("a bare report or non-JSON: unsigned, left to the report parser", () => {
    assertEquals(openReport('{"cluster":"east"}'), { signed: false, report: '{"cluster":"east"}' });
    assertEquals(openReport("nonsense"), { signed: false, report: "nonsense" });
  });
  const cases: [string, unknown][] = [
    ["an extra member", { kid, sig, report: "{}", secret: "hunter2" }],
    ["a missing report", { kid, sig }],
    ["a report that is not a string", { kid, sig, report: { cluster: "hunter2" } }],
    ["a key id of the wrong shape", { kid: "hunter2", sig, report: "{}" }],
    ["a signature of the wrong shape", { kid, sig: "hunter2", report: "{}" }],
  ];
  for (const [name, value] of cases) {
    await t.step(name, () => {
      const err = assertThrows(() => openReport(JSON.stringify(value)));
      assert(!String(err).includes("hunter2"), String(err));
    });
  }
  await t.step("longer than any report: refused before parsing", () => {
    assertThrows(() => openReport(" ".repeat(200_000)));
  });
});

Deno.test("REPORT_VERIFY_KEYS: <cluster>=<key> entries in either form, a cluster's keys together, one key per cluster", async (t) => {
  const parse = (raw: string) => parseClusterKeys(raw, clusterName);
  const x = (pair: typeof east) => JSON.parse(pair.publicJwk).x as string;
  await t.step("the PEM body line and the JWK x are the same key", () => {
    const a = parse(`east=${east.publicLine}`).get("east")!;
    const b = parse(`east=${x(east)}`).get("east")!;
    assertEquals(a, b);
    assertEquals(a[0].raw.length, 32);
  });
  await t.step("commas and new lines separate; a cluster named twice has two keys", () => {
    const keys = parse(`east=${east.publicLine},\n  east=${x(west)}\n`);
    assertEquals(keys.get("east")!.length, 2);
    assertEquals(parse(`east=${east.publicLine}\nwest=${west.publicLine}`).size, 2);
  });
  await t.step("empty: unset", () => assertEquals(parse("  ").size, 0));
  const secret = east.privatePem;
  const refused: [string, string, RegExp][] = [
    ["a private key", secret, /private key/],
    ["no cluster", east.publicLine, /entry 1 is not <cluster>=<public key>/],
    ["a bad cluster name", `a/b=${east.publicLine}`, /entry 1: must be 1-63/],
    ["not a key", "east=c2VjcmV0LXRoYXQtbXVzdC1ub3QtYmUtcXVvdGVk", /entry 1: is not an Ed25519/],
    [
      "one key for two clusters",
      `east=${east.publicLine},west=${x(east)}`,
      /cluster west the key of cluster east/,
    ],
  ];
  for (const [name, raw, message] of refused) {
    await t.step(name, () => {
      const err = assertThrows(() => parse(raw)) as Error;
      assert(message.test(err.message), err.message);
      assert(
        !err.message.includes("c2VjcmV0") && !err.message.includes("PRIVATE KEY-"),
        err.message,
      );
    });
  }
});
