/**
 * The cluster harness itself (tests/helpers/valkey_cluster.ts) against real
 * servers: keySlot() agrees with the server, a killed primary's replica takes
 * over, a slot moved by hand answers ASK while half moved and MOVED after, a
 * cluster that cannot recover makes waitHealthy() fail within its bound, and
 * TLS with a password works for cluster bus, replication and MIGRATE.
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../helpers/assert.ts";
import { withoutValkey } from "../helpers/skip.ts";
import {
  clusterCertificates,
  type ClusterNode,
  keySlot,
  SLOTS,
  startValkeyCluster,
  type TestValkeyCluster,
} from "../helpers/valkey_cluster.ts";

const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };

// Hash tags: a tag, an empty "{}" (whole key), no closing brace (whole key),
// the first tag only, a tag holding "{", multibyte UTF-8, and the empty key.
const KEYS = [
  "somekey",
  "foo{hash_tag}",
  "bar{hash_tag}",
  "{user1000}.following",
  "foo{}{bar}",
  "foo{bar",
  "foo{{bar}}zap",
  "foo{bar}{zap}",
  "}{x}",
  "héllo{wörld}",
  "",
];

/** A primary other than `node`. */
async function otherPrimary(cluster: TestValkeyCluster, node: ClusterNode): Promise<ClusterNode> {
  const found = (await cluster.nodes()).find((n) => n.role === "primary" && n.id !== node.id);
  assert(found, "another primary");
  return found;
}

Deno.test("keySlot() gives the slots the Redis Cluster specification's examples give", () => {
  assertEquals(keySlot("123456789"), 0x31c3 % SLOTS); // CRC16/XMODEM check value
  assertEquals(keySlot("somekey"), 11058);
  assertEquals(keySlot("foo{hash_tag}"), 2515);
  assertEquals(keySlot("bar{hash_tag}"), 2515);
  assertEquals(keySlot("{user1000}.following"), keySlot("{user1000}.followers"));
  assertEquals(keySlot("foo{bar}{zap}"), keySlot("bar"), "only the first tag counts");
  assertEquals(keySlot("foo{{bar}}zap"), keySlot("{bar"), "up to the first closing brace");
});

Deno.test({
  ...options,
  name:
    "startValkeyCluster() starts primaries with replicas, and a killed primary's replica takes over",
  async fn(t) {
    const cluster = await startValkeyCluster();
    try {
      await t.step("three primaries serving every slot, each with one replica", async () => {
        const nodes = await cluster.nodes();
        assertEquals(cluster.seeds.length, 6);
        const primaries = nodes.filter((n) => n.role === "primary");
        assertEquals(primaries.length, 3);
        const served = primaries.flatMap((n) => n.slots).reduce((s, [a, b]) => s + b - a + 1, 0);
        assertEquals(served, SLOTS);
        for (const p of primaries) {
          assertEquals(nodes.filter((n) => n.primaryId === p.id).length, 1, `${p.port}`);
        }
      });

      await t.step("keySlot() agrees with CLUSTER KEYSLOT", async () => {
        for (const key of KEYS) {
          const server = await cluster.cli(cluster.seeds[0], "CLUSTER", "KEYSLOT", key);
          assertEquals(keySlot(key), Number(server.trim()), JSON.stringify(key));
        }
      });

      await t.step("the replica of a killed primary serves its slots", async () => {
        const key = "failover-key";
        const owner = await cluster.ownerOf(keySlot(key));
        const replica = (await cluster.nodes()).find((n) => n.primaryId === owner.id);
        assert(replica, "the owner's replica");
        assertEquals((await cluster.cli(owner, "SET", key, "v1")).trim(), "OK");
        // WAIT: the write has reached the replica before its primary dies.
        assertEquals((await cluster.cli(owner, "WAIT", "1", "2000")).trim(), "1");
        await cluster.kill(owner);
        await cluster.waitHealthy();
        const next = await cluster.ownerOf(keySlot(key));
        assertEquals(next.id, replica.id);
        assertEquals(next.role, "primary");
        assertEquals((await cluster.cli(next, "GET", key)).trim(), "v1");
        assert(
          !(await cluster.nodes()).some((n) => n.id === owner.id),
          "the killed node is left out",
        );
      });
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  ...options,
  name: "migrateSlot() answers ASK while the slot is half moved and MOVED after",
  async fn(t) {
    const cluster = await startValkeyCluster();
    const keys = Array.from({ length: 25 }, (_, i) => `{mig}:${i}`);
    const slot = keySlot("{mig}");
    try {
      const from = await cluster.ownerOf(slot);
      const to = await otherPrimary(cluster, from);
      for (const key of keys) await cluster.cli(from, "SET", key, `value-${key}`);
      const askOf = new RegExp(`^ASK ${slot} 127\\.0\\.0\\.1:${to.port}\\s*$`);
      let batches = 0;

      await t.step("moves the slot in batches, answering ASK for keys already moved", async () => {
        await cluster.migrateSlot(slot, to, {
          batch: 10,
          whileMigrating: async () => {
            // Keys still at the source are served there; a key it lacks is asked for at the target.
            assertEquals((await cluster.cli(from, "GET", keys[0])).trim(), `value-${keys[0]}`);
            assertMatch(await cluster.cli(from, "GET", "{mig}:absent"), askOf);
          },
          afterSomeKeys: async (moved) => {
            batches++;
            assertMatch(await cluster.cli(from, "GET", moved[0]), askOf);
            // Without ASKING the importing target sends the client back to the owner.
            assertMatch(await cluster.cli(to, "GET", moved[0]), /^MOVED /);
            // redis-cli -c follows the ASK (with ASKING), as a cluster client would.
            assertEquals(
              (await cluster.cli(from, "-c", "GET", moved[0])).trim(),
              `value-${moved[0]}`,
            );
          },
        });
        assertEquals(batches, 3);
      });

      await t.step("the old owner answers MOVED and the new one has every key", async () => {
        assertEquals((await cluster.ownerOf(slot)).id, to.id);
        assertMatch(
          await cluster.cli(from, "GET", keys[0]),
          new RegExp(`^MOVED ${slot} 127\\.0\\.0\\.1:${to.port}\\s*$`),
        );
        for (const key of keys) {
          assertEquals((await cluster.cli(to, "GET", key)).trim(), `value-${key}`);
        }
        assertEquals(
          (await cluster.cli(to, "CLUSTER", "COUNTKEYSINSLOT", String(slot))).trim(),
          "25",
        );
      });

      await t.step(
        "waitHealthy() gives up within its bound when slots cannot fail over",
        async () => {
          const replica = (await cluster.nodes()).find((n) => n.primaryId === to.id);
          assert(replica, "the new owner's replica");
          await cluster.kill(replica);
          await cluster.kill(to);
          const started = Date.now();
          await assertRejects(() => cluster.waitHealthy(1500), {
            message: /timed out after 1500 ms waiting for the cluster to be healthy/,
          });
          assert(Date.now() - started < 10_000, "bounded");
        },
      );
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "startValkeyCluster() with TLS and a password replicates and migrates, and stop() ends every node",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "krt-cluster-tls-" });
    let cluster: TestValkeyCluster | undefined;
    try {
      const tls = await clusterCertificates(dir);
      cluster = await startValkeyCluster({ tls, password: `pw-${crypto.randomUUID()}` });
      const slot = keySlot("tls-key");
      const from = await cluster.ownerOf(slot);
      assertEquals((await cluster.cli(from, "SET", "tls-key", "v")).trim(), "OK");
      assertEquals((await cluster.cli(from, "WAIT", "1", "2000")).trim(), "1", "replicated");
      const to = await otherPrimary(cluster, from);
      await cluster.migrateSlot(slot, to);
      assertEquals((await cluster.cli(to, "GET", "tls-key")).trim(), "v");
      const pids = (await cluster.nodes()).map((n) => n.pid);
      await cluster.stop();
      cluster = undefined;
      for (const pid of pids) {
        assert(!(await Deno.stat(`/proc/${pid}`).catch(() => undefined)), `process ${pid} ended`);
      }
    } finally {
      await cluster?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
