/**
 * Web's side of the status record on a real Valkey-compatible server: what
 * the publish script writes (binding, live clusters, TTL), what it leaves when
 * nobody listens, and how the reader treats records web did not write.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { connectValkey, startValkey, subscribe } from "../../helpers/valkey.ts";
import {
  BINDING_FIELD,
  CLUSTER_LIVE_MS,
  CLUSTERS_KEY,
  reportField,
  statusKey,
} from "../../../shared/event_status.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { createPublisher } from "../../../web/publisher.ts";
import { createStatusReader, createStatusWaiters } from "../../../web/status_store.ts";

const BINDING = {
  repository: "b".repeat(64),
  image: "ghcr.io/acme/app",
  tags: ["dev"],
  time: "2026-12-01T10:00:00.000Z",
};

Deno.test({
  name: "createPublisher() writes the status binding with the live clusters, then publishes",
  ignore: withoutValkey(),
  async fn(t) {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const lines: LogFields[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const now = Date.now();
    const publisher = createPublisher({ client, channel: "ch", statusTtlMs: 60_000 });
    const reader = createStatusReader(client, logger);
    try {
      await client.call("ZADD", CLUSTERS_KEY, now - 1000, "east", now - 5, "west");
      await client.call("ZADD", CLUSTERS_KEY, now - CLUSTER_LIVE_MS - 1000, "gone");
      // Anyone with Valkey access can add members; names we would never write stay out.
      await client.call("ZADD", CLUSTERS_KEY, now, 'evil","x', now, "a".repeat(64));

      await t.step("nobody subscribed: no record is left behind", async () => {
        const id = crypto.randomUUID();
        const result = await publisher.publish({ eventId: id, message: "m", binding: BINDING });
        assertEquals(result, { subscribers: 0, clusters: ["east", "west"] });
        assertEquals(await client.call("EXISTS", statusKey(id)), 0);
      });

      const sub = await subscribe(valkey, "ch");
      await t.step("a subscriber: the message, and a binding web alone wrote", async () => {
        const id = crypto.randomUUID();
        const result = await publisher.publish({ eventId: id, message: "m1", binding: BINDING });
        assertEquals(result, { subscribers: 1, clusters: ["east", "west"] });
        assertEquals(await sub.waitFor(1), ["m1"]);
        const ttl = Number(await client.call("PTTL", statusKey(id)));
        assert(ttl > 50_000 && ttl <= 60_000, `ttl ${ttl}`);
        const stored = await reader.read(id);
        assertEquals(stored?.binding, { ...BINDING, clusters: ["east", "west"] });
        assertEquals(stored?.reports.size, 0);
      });

      await t.step("no live cluster at all: an empty list, not an object", async () => {
        await client.call("DEL", CLUSTERS_KEY);
        const id = crypto.randomUUID();
        const result = await publisher.publish({ eventId: id, message: "m2", binding: BINDING });
        assertEquals(result.clusters, []);
        assertEquals((await reader.read(id))?.binding.clusters, []);
      });
      await sub.close();
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  name: "security: createStatusReader() answers unknown for records web did not bind",
  ignore: withoutValkey(),
  async fn(t) {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const lines: LogFields[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const reader = createStatusReader(client, logger);
    const secret = "s3cret-from-valkey";
    try {
      await t.step("a report without a binding (a worker, or anyone, wrote it)", async () => {
        const id = crypto.randomUUID();
        await client.call("HSET", statusKey(id), reportField("east"), "{}");
        assertEquals(await reader.read(id), undefined);
      });
      await t.step(
        "a forged, unreadable binding: unknown, logged without its content",
        async () => {
          const id = crypto.randomUUID();
          await client.call("HSET", statusKey(id), BINDING_FIELD, `{"repository":"${secret}`);
          assertEquals(await reader.read(id), undefined);
          assert(lines.some((l) => l.msg === "status binding unreadable; answering not found"));
          assert(!JSON.stringify(lines).includes(secret));
        },
      );
      await t.step("an unreadable report fails its cluster, never quoted", async () => {
        const id = crypto.randomUUID();
        await client.call(
          "HSET",
          statusKey(id),
          BINDING_FIELD,
          JSON.stringify({ ...BINDING, clusters: [] }),
        );
        await client.call("HSET", statusKey(id), reportField("east"), `{"x":"${secret}"}`);
        await client.call("HSET", statusKey(id), "cluster:bad name", "{}");
        const stored = await reader.read(id);
        assertEquals(stored?.unreadable, ["east"]);
        assertEquals(stored?.reports.size, 0);
        assert(!JSON.stringify(lines).includes(secret));
      });
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test("createStatusWaiters() wakes on a change or at the deadline, and holds no more than its bound", async () => {
  const waiters = createStatusWaiters({ max: 2 });
  const now = Date.now();
  const a = waiters.watch("a", now + 10_000)!;
  const b = waiters.watch("b", now + 20)!;
  assertEquals(waiters.watch("c", now + 10_000), undefined);
  assertEquals(waiters.size(), 2);
  waiters.notify("a");
  assertEquals(await a.ended, "changed");
  assertEquals(await b.ended, "deadline");
  assertEquals(waiters.size(), 0);
  const controller = new AbortController();
  const c = waiters.watch("c", now + 10_000, controller.signal)!;
  controller.abort();
  assertEquals(await c.ended, "aborted");
  const d = waiters.watch("d", now + 10_000)!;
  d.cancel();
  assertEquals(await d.ended, "aborted");
  assertEquals(waiters.size(), 0);
});
