/**
 * The cluster registration script (worker/cluster_registration_script.ts) on a real
 * Valkey-compatible server, as a decision table: the same cluster (or one
 * sharing a CA certificate) registers; another cluster's live record is a
 * conflict that writes nothing; a stale one (or one dated beyond the window in
 * the future) is taken over; a record it cannot read strictly is overwritten
 * and never breaks the script. Then EVALSHA after SCRIPT FLUSH, two workers'
 * loops on one server, and the script on a Valkey Cluster (both keys in one
 * slot).
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/eventually.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { connectValkey, startValkey } from "../../helpers/valkey.ts";
import { startValkeyCluster } from "../../helpers/valkey_cluster.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import type { ValkeyClient } from "../../../shared/valkey_client.ts";
import { CLUSTER_LIVE_MS, CLUSTERS_KEY } from "../../../shared/event_status.ts";
import type { ClusterIdentity } from "../../../worker/cluster_identity.ts";
import {
  CLUSTER_IDENTITIES_KEY,
  NAME_HOLD_MS,
  registerCluster,
  type RegistrationOutcome,
} from "../../../worker/cluster_registration_script.ts";
import { startClusterRegistration } from "../../../worker/cluster_registration.ts";

const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };
const NOW = 1_700_000_000_000;
const EAST: ClusterIdentity = {
  fingerprints: ["aaaaaaaaaaaaaaaa"],
  about: "https://east:6443, CA sha256:aaaaaaaaaaaaaaaa",
};
const WEST: ClusterIdentity = {
  fingerprints: ["bbbbbbbbbbbbbbbb"],
  about: "https://west:6443, CA sha256:bbbbbbbbbbbbbbbb",
};
const record = (identity: ClusterIdentity, at: number) =>
  JSON.stringify({ fingerprints: identity.fingerprints, about: identity.about, at });

/** What the two keys hold for `name`. */
async function stored(client: ValkeyClient, name: string) {
  return {
    record: await client.call("HGET", CLUSTER_IDENTITIES_KEY, name),
    score: await client.call("ZSCORE", CLUSTERS_KEY, name),
  };
}

Deno.test({
  ...options,
  name: "registerCluster() decides on a real server: same cluster, live other, stale other",
  async fn(t) {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const register = (name: string, identity: ClusterIdentity, now = NOW, announce = true) =>
      registerCluster(client, { clusterName: name, identity, now, announce });
    try {
      await t.step("a new name: registered, identity and score written", async () => {
        assertEquals(await register("a", EAST), { kind: "registered" });
        assertEquals(await stored(client, "a"), { record: record(EAST, NOW), score: String(NOW) });
      });
      await t.step("not serving: the identity only, no score", async () => {
        assertEquals(await register("quiet", EAST, NOW, false), { kind: "registered" });
        assertEquals(await stored(client, "quiet"), { record: record(EAST, NOW), score: null });
      });
      await t.step("the same cluster again, and one sharing a CA certificate", async () => {
        assertEquals(await register("a", EAST, NOW + 10_000), { kind: "registered" });
        const rotating = { ...EAST, fingerprints: ["0000000000000000", "aaaaaaaaaaaaaaaa"] };
        assertEquals(await register("a", rotating, NOW + 20_000), { kind: "registered" });
        assertEquals((await stored(client, "a")).record, record(rotating, NOW + 20_000));
      });
      await t.step(
        "another cluster while the record is held (also long after the live window): conflict, nothing written",
        async () => {
          const before = await stored(client, "a");
          for (
            const now of [NOW + 20_000, NOW + 20_000 + CLUSTER_LIVE_MS, NOW + 20_000 + NAME_HOLD_MS]
          ) {
            const outcome = await register("a", WEST, now);
            assertEquals(outcome, { kind: "conflict", other: EAST.about }, `at ${now}`);
          }
          assertEquals(await stored(client, "a"), before);
        },
      );
      await t.step(
        "another cluster once the record is older than the hold: taken over",
        async () => {
          const later = NOW + 20_001 + NAME_HOLD_MS;
          assertEquals(await register("a", WEST, later), { kind: "taken_over", other: EAST.about });
          assertEquals(await stored(client, "a"), {
            record: record(WEST, later),
            score: String(later),
          });
          assertEquals(await register("a", EAST, later + 1), {
            kind: "conflict",
            other: WEST.about,
          });
        },
      );
      await t.step("a record dated beyond the window in the future is stale", async () => {
        await client.call("HSET", CLUSTER_IDENTITIES_KEY, "b", record(WEST, NOW + 10 ** 12));
        assertEquals(await register("b", EAST), { kind: "taken_over", other: WEST.about });
        await client.call("HSET", CLUSTER_IDENTITIES_KEY, "c", record(WEST, NOW + 5_000));
        assertEquals(await register("c", EAST), { kind: "conflict", other: WEST.about });
      });
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name: "security: registerCluster() overwrites a stored record it cannot read strictly",
  async fn(t) {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const live = { at: NOW, about: "x", fingerprints: ["bbbbbbbbbbbbbbbb"] };
    const malformed: [string, string][] = [
      ["not JSON", "{nope"],
      ["a JSON string", '"bbbbbbbbbbbbbbbb"'],
      ["nested deeper than cjson allows", "[".repeat(1500) + "]".repeat(1500)],
      ["over 2048 bytes", JSON.stringify({ ...live, pad: "x".repeat(2100) })],
      ["no fingerprints", JSON.stringify({ ...live, fingerprints: [] })],
      ["fingerprints as an object", JSON.stringify({ ...live, fingerprints: { a: "b" } })],
      ["a fingerprint not hex", JSON.stringify({ ...live, fingerprints: ["BBBBBBBBBBBBBBBB"] })],
      ["a fingerprint of another length", JSON.stringify({ ...live, fingerprints: ["bbbb"] })],
      ["a fingerprint not a string", JSON.stringify({ ...live, fingerprints: [7] })],
      [
        "too many fingerprints",
        JSON.stringify({ ...live, fingerprints: Array(9).fill("b".repeat(16)) }),
      ],
      ["at as text", JSON.stringify({ ...live, at: String(NOW) })],
      ["about missing", JSON.stringify({ at: NOW, fingerprints: live.fingerprints })],
      ["about unprintable", JSON.stringify({ ...live, about: "\u001b[31mred" })],
      ["about too long", JSON.stringify({ ...live, about: "x".repeat(241) })],
    ];
    try {
      for (const [name, text] of malformed) {
        await t.step(name, async () => {
          await client.call("HSET", CLUSTER_IDENTITIES_KEY, "m", text);
          const outcome = await registerCluster(client, {
            clusterName: "m",
            identity: EAST,
            now: NOW,
            announce: true,
          });
          assertEquals(outcome, { kind: "registered" });
          assertEquals((await stored(client, "m")).record, record(EAST, NOW));
        });
      }
      await t.step("a key of the wrong type fails the attempt, and Valkey is fine", async () => {
        await client.call("SET", CLUSTER_IDENTITIES_KEY, "a string");
        await assertRejects(() =>
          registerCluster(client, { clusterName: "m", identity: EAST, now: NOW, announce: true })
        );
        assertEquals(await client.call("PING"), "PONG");
      });
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "registerCluster() sends the script again after SCRIPT FLUSH, and two workers' loops share one server",
  async fn(t) {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const lines: (LogFields & { msg: string; level: string })[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    try {
      await t.step("NOSCRIPT: the script is sent, one run", async () => {
        const register = (): Promise<RegistrationOutcome> =>
          registerCluster(client, { clusterName: "f", identity: EAST, now: NOW, announce: true });
        assertEquals(await register(), { kind: "registered" });
        await client.call("SCRIPT", "FLUSH");
        assertEquals(await register(), { kind: "registered" });
      });
      await t.step("east registers; west refuses with the one line naming both", async () => {
        const stop = new AbortController();
        const start = (identity: ClusterIdentity) =>
          startClusterRegistration({
            client,
            clusterName: "prod",
            identity,
            serving: () => true,
            logger,
            signal: stop.signal,
            intervalMs: 200,
            pollMs: 50,
          });
        const east = start(EAST);
        await east.whenRegistered(AbortSignal.any([stop.signal, AbortSignal.timeout(5000)]));
        assert(east.registered(), "east registered within 5 s");
        const west = start(WEST);
        const line = await eventually("west's conflict", () => west.conflict());
        assertEquals(
          line,
          'CLUSTER_NAME "prod" is held by another cluster (https://east:6443, CA sha256:aaaaaaaaaaaaaaaa) — this worker is https://west:6443, CA sha256:bbbbbbbbbbbbbbbb; give each cluster its own CLUSTER_NAME',
        );
        await new Promise((r) => setTimeout(r, 600));
        assertEquals(lines.filter((l) => l.level === "error").map((l) => l.msg), [line]);
        assert(east.registered() && !west.registered());
        assertMatch(String((await stored(client, "prod")).record), /east/);
        stop.abort();
        await Promise.all([east.done, west.done]);
      });
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name: "registerCluster() runs on a Valkey Cluster: both keys live in one slot",
  async fn() {
    const cluster = await startValkeyCluster({ replicasPerPrimary: 0 });
    const client = await connectValkey(cluster.seeds[0], { clusterNodes: cluster.seeds });
    try {
      const register = (identity: ClusterIdentity) =>
        registerCluster(client, { clusterName: "c", identity, now: Date.now(), announce: true });
      assertEquals(await register(EAST), { kind: "registered" });
      assertEquals(await register(WEST), { kind: "conflict", other: EAST.about });
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  },
});
