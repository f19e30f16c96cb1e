/**
 * web/report_verifier.ts in process: a report counts only when the cluster it
 * is filed under signed it, for this event, with one of its own keys.
 */

import { assertEquals, assertRejects } from "../helpers/assert.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { clusterName } from "../../config/worker_settings.ts";
import { parseClusterKeys, parseSigningKey } from "../../shared/event_keys.ts";
import { encodeSignedReport, reportBytes } from "../../shared/report_signature.ts";
import { importSigningKey, type SigningKey } from "../../shared/signing_key.ts";
import { createReportVerifier } from "../../web/report_verifier.ts";

const ID = crypto.randomUUID();
const [east, west, next] = await Promise.all([
  generateKeyPair(),
  generateKeyPair(),
  generateKeyPair(),
]);
const key = (pem: string) => importSigningKey(parseSigningKey(pem)!, "REPORT_SIGNING_KEY");
const [eastKey, westKey, nextKey] = await Promise.all([
  key(east.privatePem),
  key(west.privatePem),
  key(next.privatePem),
]);
const signed = (k: SigningKey, json: string, id = ID) =>
  encodeSignedReport(json, k.keyId, k.sign(reportBytes(id, json)));

Deno.test("createReportVerifier() accepts a cluster's own signature for this event and names every other case", async (t) => {
  // east is mid-rotation: both its keys count.
  const verifier = await createReportVerifier(
    parseClusterKeys(
      `west=${west.publicLine}\neast=${east.publicLine},east=${next.publicLine}`,
      clusterName,
    ),
  );
  assertEquals(verifier.clusters, ["east", "west"]);
  assertEquals(verifier.keyIds.east.length, 2);
  const json = '{"cluster":"east"}';
  const cases: [string, string, string, unknown][] = [
    ["its own key", "east", signed(eastKey, json), { report: json }],
    ["its new key while rotating", "east", signed(nextKey, json), { report: json }],
    ["unsigned", "east", json, { rejected: "unsigned" }],
    ["another cluster's key", "east", signed(westKey, json), { rejected: "unknown_key" }],
    ["a cluster without keys", "north", signed(eastKey, json), { rejected: "unknown_cluster" }],
    [
      "altered after signing",
      "east",
      signed(eastKey, json).replace("east", "East"),
      { rejected: "bad_signature" },
    ],
    [
      "signed for another event",
      "east",
      signed(eastKey, json, crypto.randomUUID()),
      { rejected: "bad_signature" },
    ],
  ];
  for (const [name, cluster, raw, expected] of cases) {
    await t.step(name, async () => assertEquals(await verifier.check(ID, cluster, raw), expected));
  }
});

Deno.test("createReportVerifier() refuses a key it cannot import, naming the cluster only", async () => {
  const sources = new Map([["east", [{ raw: new Uint8Array(31) }]]]);
  const err = await assertRejects(() => createReportVerifier(sources));
  assertEquals(err.message.includes("REPORT_VERIFY_KEYS (--report-verify-keys) of east"), true);
});
