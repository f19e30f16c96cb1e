/**
 * The client in cluster mode (shared/valkey_cluster_client.ts) against a real
 * three-primary Valkey Cluster with a replica each, on loopback: commands and
 * transactions reach the primary of their slot, a slot moved by hand is
 * followed through ASK while it moves and MOVED after, a killed or frozen
 * primary's replica is found once promoted, a manual failover is followed, a sharded subscriber follows its slot to
 * the new primary in both cases, TLS with a private CA and an ACL password
 * work as with one server, and a seed that is no cluster node is named with
 * what to do. The product's whole flow on a cluster is proven in
 * tests/e2e/valkey_cluster_test.ts.
 */

import { assert, assertEquals, assertMatch } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/eventually.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { type ConnectOptions, startValkey, testSettings } from "../../helpers/valkey.ts";
import {
  clusterCertificates,
  type ClusterNode,
  startValkeyCluster,
} from "../../helpers/valkey_cluster.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { createValkeyClient, type ValkeyClient } from "../../../shared/valkey_client.ts";
import { keySlot } from "../../../shared/valkey_slots.ts";
import type { HostPort } from "../../../lib/setting_values.ts";

const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };
const TAG = "{krt-cluster-test}";

function recordingLogger() {
  const lines: (LogFields & { msg: string; level: string })[] = [];
  const logger = createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  return { lines, logger };
}

/** A cluster command client on `seeds`, connected. */
async function commands(seeds: HostPort[], extra: ConnectOptions = {}) {
  const { lines, logger } = recordingLogger();
  const client = createValkeyClient(testSettings(seeds[0], { ...extra, clusterNodes: seeds }), {
    name: "krt-cluster-test",
    logger,
  });
  await eventually("the cluster client connected", () => client.connected, 10_000, 20);
  return { client, lines };
}

/** A sharded subscriber on `channel`, recording what arrives. */
async function shardedSubscriber(seeds: HostPort[], channel: string, extra: ConnectOptions = {}) {
  const { lines, logger } = recordingLogger();
  const messages: string[] = [];
  const client = createValkeyClient(testSettings(seeds[0], { ...extra, clusterNodes: seeds }), {
    name: "krt-cluster-test-subscriber",
    logger,
    subscription: {
      channels: [channel],
      sharded: true,
      onMessage: (_channel, message) => messages.push(message),
    },
  });
  await eventually("the subscriber subscribed", () => client.connected, 10_000, 20);
  return { client, lines, messages };
}

/** Publishes until the subscriber has one message more; a publish during a move may find nobody. */
async function publishSeen(
  client: ValkeyClient,
  channel: string,
  messages: string[],
  text: string,
): Promise<void> {
  await eventually(
    `"${text}" received`,
    async () => {
      if (messages.includes(text)) return true;
      await client.call("SPUBLISH", channel, text).catch(() => 0);
      return messages.includes(text) || undefined;
    },
    15_000,
    100,
  );
}

Deno.test({
  ...options,
  name:
    "cluster: commands, scripts and transactions reach the primary of their slot, keys of every slot",
  async fn() {
    const cluster = await startValkeyCluster();
    const { client } = await commands(cluster.seeds);
    try {
      // Keys spread over every primary: each is written and read where it lives.
      const keys = Array.from({ length: 60 }, (_, i) => `key-${i}`);
      for (const key of keys) await client.call("SET", key, `v-${key}`);
      for (const key of keys) assertEquals(await client.call("GET", key), `v-${key}`);
      const owners = new Set(
        await Promise.all(keys.map(async (k) => (await cluster.ownerOf(keySlot(k))).port)),
      );
      assertEquals(owners.size, 3, "the keys live on all three primaries");
      const replies = await client.transaction([
        ["SET", `${TAG}:a`, "1"],
        ["INCR", `${TAG}:a`],
        ["ZADD", `${TAG}:z`, 5, "m"],
      ]);
      assertEquals(replies, ["OK", 2, 1]);
      assertEquals(
        await client.call("EVAL", "return redis.call('GET', KEYS[1])", 1, `${TAG}:a`),
        "2",
      );
      assertEquals(await client.call("PING"), "PONG");
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "cluster: a slot moved while in use is followed through ASK, then MOVED; nothing written is lost",
  async fn() {
    const cluster = await startValkeyCluster();
    const { client } = await commands(cluster.seeds);
    const slot = keySlot(TAG);
    try {
      for (let i = 0; i < 40; i++) await client.call("SET", `${TAG}:k${i}`, String(i));
      const from = await cluster.ownerOf(slot);
      const to = (await cluster.nodes()).find((n) => n.role === "primary" && n.id !== from.id)!;
      let written = 40;
      const traffic = async () => {
        // Old keys (some moved, some not) read back; new keys written (they go to the target).
        for (let i = 0; i < 40; i += 7) {
          assertEquals(await client.call("GET", `${TAG}:k${i}`), String(i));
        }
        await client.call("SET", `${TAG}:k${written}`, String(written));
        written++;
        await client.transaction([["INCR", `${TAG}:moved-count`]]).catch((err) => {
          // A transaction whose key moves in the middle of the run is retried by the caller.
          assertMatch(String(err), /TRYAGAIN|ASK|MOVED/);
        });
      };
      await cluster.migrateSlot(slot, to, {
        batch: 5,
        whileMigrating: traffic,
        afterSomeKeys: traffic,
      });
      await traffic();
      assertEquals((await cluster.ownerOf(slot)).id, to.id);
      for (let i = 0; i < written; i++) {
        assertEquals(await client.call("GET", `${TAG}:k${i}`), String(i), `key ${i}`);
      }
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "cluster: when the primary of a slot is killed, commands and a sharded subscription come back on its promoted replica",
  async fn() {
    const cluster = await startValkeyCluster();
    const channel = `${TAG}:events`;
    const { client, lines } = await commands(cluster.seeds);
    const subscriber = await shardedSubscriber(cluster.seeds, channel);
    try {
      await client.call("SET", `${TAG}:before`, "1");
      await publishSeen(client, channel, subscriber.messages, "before");
      const victim: ClusterNode = await cluster.ownerOf(keySlot(TAG));
      await cluster.kill(victim);
      // Until the replica is promoted, commands for the slot fail at once (web answers 503).
      await cluster.waitHealthy(20_000);
      const promoted = await cluster.ownerOf(keySlot(TAG));
      assertEquals(promoted.id !== victim.id, true);
      await eventually(
        "a command served by the promoted replica",
        async () => {
          return (await client.call("GET", `${TAG}:before`).catch(() => undefined)) === "1" ||
            undefined;
        },
        15_000,
        100,
      );
      await publishSeen(client, channel, subscriber.messages, "after");
      assert(
        lines.some((l) => l.msg === "valkey cluster node connection lost"),
        "the lost node is logged",
      );
      assert(
        subscriber.lines.some((l) =>
          l.msg === "valkey connected" && l.node === `127.0.0.1:${promoted.port}`
        ),
        "the subscriber moved to the promoted replica",
      );
    } finally {
      client.disconnect();
      subscriber.client.disconnect();
      await cluster.stop();
    }
  },
});

Deno.test({
  ...options,
  name: "cluster: a sharded subscription follows its slot to another primary",
  async fn() {
    const cluster = await startValkeyCluster();
    const channel = `${TAG}:events`;
    const { client } = await commands(cluster.seeds);
    const subscriber = await shardedSubscriber(cluster.seeds, channel);
    try {
      await publishSeen(client, channel, subscriber.messages, "before");
      const from = await cluster.ownerOf(keySlot(TAG));
      const to = (await cluster.nodes()).find((n) => n.role === "primary" && n.id !== from.id)!;
      await cluster.migrateSlot(keySlot(TAG), to);
      await publishSeen(client, channel, subscriber.messages, "after");
      assert(
        subscriber.lines.some((l) =>
          l.msg === "valkey connection lost; reconnecting" && /slot moved/.test(String(l.error))
        ),
        "the server's sunsubscribe moved the subscriber",
      );
      assertEquals(
        subscriber.lines.filter((l) => l.msg === "valkey connected").at(-1)?.node,
        `127.0.0.1:${to.port}`,
      );
    } finally {
      client.disconnect();
      subscriber.client.disconnect();
      await cluster.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "cluster: a password-protected cluster works; a seed that is not in cluster mode is named with what to do",
  async fn() {
    const password = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
    const cluster = await startValkeyCluster({ password });
    const plain = await startValkey();
    try {
      const { client, lines } = await commands(cluster.seeds, { password });
      assertEquals(await client.call("SET", `${TAG}:x`, "1"), "OK");
      client.disconnect();
      assert(!JSON.stringify(lines).includes(password), "the password reached the log");

      const { lines: wrong, logger } = recordingLogger();
      const standalone = createValkeyClient(
        testSettings(plain, { clusterNodes: [{ host: plain.host, port: plain.port }] }),
        { name: "krt-cluster-test", logger },
      );
      try {
        const error = await eventually(
          "the connection error line",
          () => wrong.find((l) => l.msg === "valkey connection error"),
        );
        assertEquals(
          error.error,
          `${plain.host}:${plain.port} is not in cluster mode; use VALKEY_ADDR instead of VALKEY_CLUSTER_NODES`,
        );
      } finally {
        standalone.disconnect();
      }
    } finally {
      await plain.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "cluster: over TLS with a private CA and a password, every node the slot map names is verified and used",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "krt-cluster-tls-" });
    const password = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
    const tls = await clusterCertificates(dir);
    const cluster = await startValkeyCluster({ tls, password });
    try {
      const tlsCa = await Deno.readTextFile(tls.ca);
      const { lines, logger } = recordingLogger();
      const client = createValkeyClient(
        testSettings(cluster.seeds[0], { clusterNodes: [cluster.seeds[0]], password, tlsCa }),
        { name: "krt-cluster-test", logger },
      );
      try {
        await eventually("the cluster client connected", () => client.connected, 10_000, 20);
        // Keys on every primary: the client opened a verified TLS connection to each.
        for (let i = 0; i < 30; i++) await client.call("SET", `tls-${i}`, String(i));
        for (let i = 0; i < 30; i++) assertEquals(await client.call("GET", `tls-${i}`), String(i));
        assert(!JSON.stringify(lines).includes(password), "the password reached the log");
      } finally {
        client.disconnect();
      }
      // Without the CA, the certificate is refused with the advice for it.
      const { lines: refused, logger: quiet } = recordingLogger();
      const untrusting = createValkeyClient(
        testSettings(cluster.seeds[0], { clusterNodes: cluster.seeds, password, tlsCa: "" }),
        { name: "krt-cluster-test", logger: quiet },
      );
      try {
        const error = await eventually(
          "the connection error line",
          () => refused.find((l) => l.msg === "valkey connection error"),
        );
        assertMatch(String(error.error), /not signed by a trusted CA/);
      } finally {
        untrusting.disconnect();
      }
    } finally {
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...options,
  name:
    "cluster: a primary that freezes (TLS handshakes hang, nothing answers) is left for its promoted replica by commands and the sharded subscriber",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "krt-cluster-freeze-" });
    const tls = await clusterCertificates(dir);
    const cluster = await startValkeyCluster({ tls });
    const tlsCa = await Deno.readTextFile(tls.ca);
    const channel = `${TAG}:events`;
    const { client, lines } = await commands(cluster.seeds, { tlsCa });
    const subscriber = await shardedSubscriber(cluster.seeds, channel, { tlsCa });
    const victim = await cluster.ownerOf(keySlot(TAG));
    try {
      await client.call("SET", `${TAG}:before`, "1");
      await publishSeen(client, channel, subscriber.messages, "before");
      // SIGSTOP: the kernel still accepts connections to it, but no TLS handshake completes,
      // as with a node whose packets are dropped. The cluster fails it over on its own.
      Deno.kill(victim.pid, "SIGSTOP");
      await eventually(
        "a command served by the promoted replica",
        async () => {
          return (await client.call("GET", `${TAG}:before`).catch(() => undefined)) === "1" ||
            undefined;
        },
        30_000,
        200,
      );
      await publishSeen(client, channel, subscriber.messages, "after");
      const promoted = await cluster.ownerOf(keySlot(TAG));
      assert(promoted.id !== victim.id, "the replica took over");
      assertEquals(
        subscriber.lines.filter((l) => l.msg === "valkey connected").at(-1)?.node,
        `127.0.0.1:${promoted.port}`,
      );
      assert(
        subscriber.lines.some((l) =>
          l.msg === "valkey connection lost; reconnecting" && /PING/.test(String(l.error))
        ),
        "the subscriber noticed by PING",
      );
      assert(lines.length < 200, `the command client logged ${lines.length} lines`);
    } finally {
      try {
        Deno.kill(victim.pid, "SIGCONT");
      } catch {
        // gone
      }
      client.disconnect();
      subscriber.client.disconnect();
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...options,
  name:
    "cluster: after a manual failover (the old primary stays up as a replica), commands and the sharded subscriber move to the new primary",
  async fn() {
    const cluster = await startValkeyCluster();
    const channel = `${TAG}:events`;
    const { client } = await commands(cluster.seeds);
    const subscriber = await shardedSubscriber(cluster.seeds, channel);
    try {
      await client.call("SET", `${TAG}:before`, "1");
      await publishSeen(client, channel, subscriber.messages, "before");
      const old = await cluster.ownerOf(keySlot(TAG));
      const replica = (await cluster.nodes()).find((n) => n.primaryId === old.id)!;
      assertEquals((await cluster.cli(replica, "CLUSTER", "FAILOVER")).trim(), "OK");
      await eventually(
        "the replica promoted",
        async () => {
          const owner = await cluster.ownerOf(keySlot(TAG)).catch(() => undefined);
          return owner?.id === replica.id || undefined;
        },
        20_000,
        100,
      );
      await publishSeen(client, channel, subscriber.messages, "after");
      assertEquals(await client.call("GET", `${TAG}:before`), "1");
      // The demoted primary ends the sharded subscription itself, as for a moved slot.
      assert(
        subscriber.lines.some((l) =>
          l.msg === "valkey connection lost; reconnecting" && /slot moved/.test(String(l.error))
        ),
        "the demoted primary ended the subscription",
      );
      assertEquals(
        subscriber.lines.filter((l) => l.msg === "valkey connected").at(-1)?.node,
        `127.0.0.1:${replica.port}`,
      );
    } finally {
      client.disconnect();
      subscriber.client.disconnect();
      await cluster.stop();
    }
  },
});
