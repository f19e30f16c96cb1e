/**
 * Web's one publish script (web/publisher.ts) on a real Valkey-compatible
 * server: which clusters an event is for (the registered ones until
 * CLUSTER_FORGET_AFTER, or exactly CLUSTERS), which of them were not live,
 * what it writes (binding, unreachable list, TTL, one stream entry, one
 * channel message) and what it leaves alone when no cluster is known, how the
 * stream is trimmed, and what a user then sees through POST and GET /event on
 * the real handler. The replay guard's side of the script is proven in
 * tests/integration/web/replay_test.ts.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../../helpers/assert.ts";
import { orgOnlyPolicy } from "../../helpers/issuer.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { report } from "../../helpers/status_fixtures.ts";
import { connectValkey, fieldsOf, startValkey, subscribe } from "../../helpers/valkey.ts";
import type { TestValkey } from "../../helpers/valkey.ts";
import { valkeyWebParts } from "../../helpers/web_deps.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { createRegistry } from "../../../lib/metrics.ts";
import {
  BINDING_FIELD,
  CLUSTER_LIVE_MS,
  CLUSTERS_KEY,
  reportField,
  statusKey,
  UNREACHABLE_FIELD,
} from "../../../shared/event_status.ts";
import { EVENTS_STREAM, MESSAGE_FIELD, SENDER_FIELD } from "../../../shared/event_stream.ts";
import { createReplayGuard } from "../../../web/replay.ts";
import {
  NOTIFY_DUE_KEY,
  NOTIFY_FIELD,
  NOTIFY_FIRST_CHECK_MS,
} from "../../../web/notification_record.ts";
import type { ValkeyClient } from "../../../shared/valkey_client.ts";
import { createHandler } from "../../../web/handler.ts";
import { createWebMetrics } from "../../../web/metrics.ts";
import type { GitHubClaims } from "../../../web/oidc.ts";
import { createAuthorizer } from "../../../web/policy.ts";
import { createPublisher, MAX_CLUSTERS, type PublisherOptions } from "../../../web/publisher.ts";
import { createStatusReader } from "../../../web/status_store.ts";
import { createStatusWaiters } from "../../../web/status_waiters.ts";

const BINDING = {
  repository: "b".repeat(64),
  image: "ghcr.io/acme/app",
  tags: ["dev"],
  time: "2026-12-01T10:00:00.000Z",
};
const HOUR = 3_600_000;
/** The settings' defaults: CATCH_UP_WINDOW 1h, CLUSTER_FORGET_AFTER 168h. */
const DEFAULTS = { statusTtlMs: 60_000, catchUpWindowMs: HOUR, forgetAfterMs: 168 * HOUR };
const quiet = createLogger({ level: "error", write: () => {} });

/** A fresh server and a connection to it for one test. */
async function withValkey(fn: (valkey: TestValkey, client: ValkeyClient) => Promise<void>) {
  const valkey = await startValkey();
  const client = await connectValkey(valkey);
  try {
    await fn(valkey, client);
  } finally {
    client.disconnect();
    await valkey.stop();
  }
}

/** The publisher on `client` with the settings' defaults over `options`. */
function publisherOn(client: ValkeyClient, options: Partial<PublisherOptions> = {}) {
  return createPublisher({ client, channel: "ch", ...DEFAULTS, ...options });
}

/** Publishes message `m` for a new event; returns its id and what publishing answered. */
async function publish(publisher: ReturnType<typeof publisherOn>, message = "m") {
  const eventId = crypto.randomUUID();
  return { eventId, ...(await publisher.publish({ eventId, message, binding: BINDING })) };
}

/** The stream's entries, oldest first, as id and fields. */
async function streamEntries(client: ValkeyClient): Promise<{ id: string; fields: unknown }[]> {
  const reply = await client.call("XRANGE", EVENTS_STREAM, "-", "+");
  assert(Array.isArray(reply), String(reply));
  return reply.map(([id, fields]) => ({ id: String(id), fields }));
}

/** Adds `count` members to the cluster set, in batches; `member(i)` gives score and name. */
async function addMembers(
  client: ValkeyClient,
  count: number,
  member: (i: number) => [number, string],
): Promise<void> {
  for (let i = 0; i < count; i += 250) {
    const batch = Array.from({ length: Math.min(250, count - i) }, (_, j) => member(i + j));
    await client.call("ZADD", CLUSTERS_KEY, ...batch.flat());
  }
}

/** The members of the cluster set, by name. */
async function registered(client: ValkeyClient): Promise<string[]> {
  return ((await client.call("ZRANGE", CLUSTERS_KEY, 0, -1)) as string[]).sort();
}

Deno.test({
  name:
    "createPublisher() writes the binding with every known cluster, names those not live, appends the message to the stream, then publishes",
  ignore: withoutValkey(),
  fn: () =>
    withValkey(async (valkey, client) => {
      const publisher = publisherOn(client);
      const reader = createStatusReader(client, quiet);
      const now = Date.now();
      await client.call("ZADD", CLUSTERS_KEY, now - 1000, "west", now - 5, "east");
      await client.call("ZADD", CLUSTERS_KEY, now - CLUSTER_LIVE_MS - 60_000, "away");

      const sub = await subscribe(valkey, "ch");
      try {
        const { eventId, ...first } = await publish(publisher, "m1");
        assertEquals(first, {
          subscribers: 1,
          clusters: ["away", "east", "west"],
          unreachable: ["away"],
        });
        assertEquals(await sub.waitFor(1), ["m1"]);
        const fields = fieldsOf(await client.call("HGETALL", statusKey(eventId)));
        assertEquals(Object.keys(fields).sort(), [BINDING_FIELD, UNREACHABLE_FIELD]);
        assertEquals(JSON.parse(fields[UNREACHABLE_FIELD]), ["away"]);
        const ttl = Number(await client.call("PTTL", statusKey(eventId)));
        assert(ttl > 50_000 && ttl <= 60_000, `ttl ${ttl}`);
        const stored = await reader.read(eventId);
        assertEquals(stored?.binding, { ...BINDING, clusters: ["away", "east", "west"] });
        assertEquals(stored?.unreachable, ["away"]);
        assertEquals(stored?.reports.size, 0);
      } finally {
        await sub.close();
      }

      // Workers read the stream, not the channel: nobody subscribed changes nothing.
      const second = await publish(publisher, "m2");
      assertEquals([second.subscribers, second.clusters], [0, ["away", "east", "west"]]);
      assertEquals((await reader.read(second.eventId))?.binding.clusters, [
        "away",
        "east",
        "west",
      ]);
      assertEquals((await streamEntries(client)).map((e) => e.fields), [
        [MESSAGE_FIELD, "m1"],
        [MESSAGE_FIELD, "m2"],
      ]);
    }),
});

Deno.test({
  name:
    "createPublisher() counts a cluster as known until CLUSTER_FORGET_AFTER and as live within CLUSTER_LIVE_MS, and forgets older ones",
  ignore: withoutValkey(),
  fn: () =>
    withValkey(async (_valkey, client) => {
      const at = 1_800_000_000_000;
      const forgetAfterMs = 600_000;
      const publisher = publisherOn(client, { forgetAfterMs, now: () => at });
      await client.call(
        "ZADD",
        CLUSTERS_KEY,
        at + 5000,
        "ahead", // its clock runs ahead of web's
        at - CLUSTER_LIVE_MS,
        "live-edge",
        at - CLUSTER_LIVE_MS - 1,
        "just-away",
        at - forgetAfterMs,
        "known-edge",
        at - forgetAfterMs - 1,
        "forgotten",
        0,
        "ancient",
      );
      const result = await publish(publisher);
      assertEquals(result.clusters, ["ahead", "just-away", "known-edge", "live-edge"]);
      assertEquals(result.unreachable, ["just-away", "known-edge"]);
      assertEquals(
        await registered(client),
        ["ahead", "just-away", "known-edge", "live-edge"],
        "the forgotten are removed from the set",
      );
      const fields = fieldsOf(await client.call("HGETALL", statusKey(result.eventId)));
      assertEquals(JSON.parse(fields[UNREACHABLE_FIELD]), ["just-away", "known-edge"]);
    }),
});

Deno.test({
  name: "createPublisher() writes no unreachable list when every known cluster is live",
  ignore: withoutValkey(),
  fn: () =>
    withValkey(async (_valkey, client) => {
      await client.call("ZADD", CLUSTERS_KEY, Date.now(), "east");
      const result = await publish(publisherOn(client));
      assertEquals([result.clusters, result.unreachable], [["east"], []]);
      const fields = fieldsOf(await client.call("HGETALL", statusKey(result.eventId)));
      assertEquals(Object.keys(fields), [BINDING_FIELD]);
    }),
});

Deno.test({
  name:
    "security: createPublisher() ignores names in the cluster set no worker could have written, and reads and removes at most 1000 per publish",
  ignore: withoutValkey(),
  fn: async (t) => {
    await withValkey(async (_valkey, client) => {
      const now = Date.now();
      const publisher = publisherOn(client);
      await t.step("names of another shape are left out of the binding", async () => {
        // Anyone with Valkey access can add members.
        const bad = [
          'evil","x',
          "a".repeat(64),
          "bad name",
          "x/y",
          "ünï",
          "",
          "semi;colon",
          "new\nline",
        ];
        for (const name of bad) await client.call("ZADD", CLUSTERS_KEY, now, name);
        await client.call("ZADD", CLUSTERS_KEY, now, "b".repeat(63), now, "ok.name_1-x");
        const result = await publish(publisher);
        assertEquals(result.clusters, ["b".repeat(63), "ok.name_1-x"]);
        const stored = await createStatusReader(client, quiet).read(result.eventId);
        assertEquals(stored?.binding.clusters, result.clusters, "the binding reads back");
      });
      await t.step(
        "1001 registered clusters: the 1000 heard most recently are in the binding, and publishing works",
        async () => {
          await client.call("DEL", CLUSTERS_KEY, EVENTS_STREAM);
          // cluster-0000 was heard longest ago: it is the one left out.
          const name = (i: number) => `cluster-${String(i).padStart(4, "0")}-${"x".repeat(50)}`;
          await addMembers(client, 1001, (i) => [now - 1001 + i, name(i)]);
          const result = await publish(publisher, "many");
          assertEquals(result.clusters.length, MAX_CLUSTERS);
          assertEquals(result.clusters.includes(name(0)), false);
          assertEquals(result.clusters.includes(name(1)), true);
          const stored = await createStatusReader(client, quiet).read(result.eventId);
          assertEquals(stored?.binding.clusters, result.clusters, "the binding reads back");
          assertEquals((await streamEntries(client)).map((e) => e.fields), [
            [MESSAGE_FIELD, "many"],
          ]);
          assertEquals(await client.call("ZCARD", CLUSTERS_KEY), 1001, "none of them forgotten");
        },
      );
      await t.step(
        "2500 forgotten clusters: at most 1000 removed per publish, and each publish still works",
        async () => {
          await client.call("DEL", CLUSTERS_KEY);
          await client.call("ZADD", CLUSTERS_KEY, now, "live");
          // Silent for longer than CLUSTER_FORGET_AFTER (168 h).
          await addMembers(client, 2500, (i) => [now - 200 * HOUR - i, `old-${i}`]);
          for (const left of [1501, 501, 1]) {
            const result = await publish(publisher);
            assertEquals(result.clusters, ["live"]);
            assertEquals(await client.call("ZCARD", CLUSTERS_KEY), left);
          }
        },
      );
      await t.step("CLUSTERS naming more than 1000 clusters is refused at construction", () => {
        const names = Array.from({ length: MAX_CLUSTERS + 1 }, (_, i) => `c${i}`);
        assertThrows(() => publisherOn(client, { clusters: names }), {
          code: "ERR_CONFIG",
          message: /names 1001 clusters; at most 1000/,
        });
        publisherOn(client, { clusters: names.slice(0, MAX_CLUSTERS) });
      });
    });
  },
});

Deno.test({
  name:
    "createPublisher() with CLUSTERS sends every event to exactly the listed clusters, registered or not",
  ignore: withoutValkey(),
  fn: async (t) => {
    await withValkey(async (_valkey, client) => {
      const now = Date.now();
      const publisher = publisherOn(client, { clusters: ["a", "b"] });
      await t.step("nothing registered yet: both listed, both unreachable", async () => {
        const result = await publish(publisher);
        assertEquals([result.clusters, result.unreachable], [["a", "b"], ["a", "b"]]);
        assertEquals(await client.call("XLEN", EVENTS_STREAM), 1, "accepted and appended");
      });
      await t.step("a registered and live, c registered but not listed", async () => {
        await client.call("ZADD", CLUSTERS_KEY, now, "a", now, "c");
        const result = await publish(publisher);
        assertEquals([result.clusters, result.unreachable], [["a", "b"], ["b"]]);
        const stored = await createStatusReader(client, quiet).read(result.eventId);
        assertEquals([stored?.binding.clusters, stored?.unreachable], [["a", "b"], ["b"]]);
      });
      await t.step("a listed cluster whose heartbeat is old is unreachable", async () => {
        await client.call("ZADD", CLUSTERS_KEY, now - CLUSTER_LIVE_MS - 1000, "b");
        const result = await publish(publisher);
        assertEquals([result.clusters, result.unreachable], [["a", "b"], ["b"]]);
        await client.call("ZADD", CLUSTERS_KEY, now, "b");
        assertEquals((await publish(publisher)).unreachable, []);
      });
    });
  },
});

Deno.test({
  name:
    "createPublisher() with no known cluster writes nothing at all: no record, no stream entry, no message",
  ignore: withoutValkey(),
  fn: async (t) => {
    await withValkey(async (valkey, client) => {
      const publisher = publisherOn(client, { forgetAfterMs: 60_000 });
      const sub = await subscribe(valkey, "ch");
      const nothingWritten = async (result: Awaited<ReturnType<typeof publish>>) => {
        const { eventId, ...published } = result;
        assertEquals(published, { subscribers: 0, clusters: [], unreachable: [] });
        assertEquals(await client.call("EXISTS", statusKey(eventId), EVENTS_STREAM), 0);
        await new Promise((r) => setTimeout(r, 50));
        assertEquals(sub.messages, []);
      };
      try {
        await t.step("nobody ever registered", async () => {
          await nothingWritten(await publish(publisher));
        });
        await t.step("only clusters silent for longer than forget-after", async () => {
          await client.call("ZADD", CLUSTERS_KEY, Date.now() - 61_000, "old");
          await nothingWritten(await publish(publisher));
          assertEquals(await registered(client), [], "and they are forgotten");
        });
        await t.step("only names of another shape", async () => {
          await client.call("ZADD", CLUSTERS_KEY, Date.now(), "bad name");
          await nothingWritten(await publish(publisher));
        });
      } finally {
        await sub.close();
      }
    });
  },
});

Deno.test({
  name:
    "createPublisher() appends one stream entry per event and trims entries older than twice the catch-up window",
  ignore: withoutValkey(),
  fn: async (t) => {
    await withValkey(async (_valkey, client) => {
      const window = 60_000;
      await client.call("ZADD", CLUSTERS_KEY, Date.now(), "east");
      /** Appends entries with the given times as ids, as if web had appended them then. */
      const appendAt = async (times: number[]) => {
        for (const [i, ms] of times.entries()) {
          await client.call("XADD", EVENTS_STREAM, `${ms}-0`, MESSAGE_FIELD, `old-${i}`);
        }
      };
      await t.step(
        "exactly: entries before now - 2 x window go, the rest stay (one entry per node)",
        async () => {
          // MINID ~ removes whole nodes only; with one entry per node it is exact.
          // (Approximate trimming also removes at most 100 nodes per append.)
          await client.call("CONFIG", "SET", "stream-node-max-entries", "1");
          const at = Date.now();
          const publisher = publisherOn(client, { catchUpWindowMs: window, now: () => at });
          await appendAt([at - 300_000, at - 2 * window - 1, at - 2 * window, at - window]);
          const result = await publish(publisher, "new");
          assertEquals(result.clusters, ["east"]);
          const entries = await streamEntries(client);
          assertEquals(entries.slice(0, 2).map((e) => e.id), [
            `${at - 2 * window}-0`,
            `${at - window}-0`,
          ]);
          assertEquals(entries.map((e) => e.fields), [
            [MESSAGE_FIELD, "old-2"],
            [MESSAGE_FIELD, "old-3"],
            [MESSAGE_FIELD, "new"],
          ]);
          await client.call("DEL", EVENTS_STREAM);
          await client.call("CONFIG", "SET", "stream-node-max-entries", "100");
        },
      );
      await t.step(
        "as configured by default: old entries go a whole node at a time, recent ones stay",
        async () => {
          const at = Date.now();
          const publisher = publisherOn(client, { catchUpWindowMs: window, now: () => at });
          const old = Array.from({ length: 250 }, (_, i) => at - 10 * window + i);
          await appendAt([...old, at - window]);
          await publish(publisher, "new");
          const entries = await streamEntries(client);
          const kept = entries.filter((e) => Number(e.id.split("-")[0]) < at - 2 * window);
          assert(kept.length < 100, `at most the last node of old entries is left: ${kept.length}`);
          assertEquals(entries.slice(-2).map((e) => e.fields), [
            [MESSAGE_FIELD, "old-250"],
            [MESSAGE_FIELD, "new"],
          ]);
        },
      );
      await t.step(
        "security: a web clock far ahead of Valkey's trims by Valkey's: its own and others' recent entries stay",
        async () => {
          // Entry ids are Valkey's clock: a replica whose clock runs 3 windows ahead
          // must not make its own event, or another replica's unread one, vanish;
          // what is old by Valkey's clock still goes.
          await client.call("DEL", EVENTS_STREAM);
          await client.call("CONFIG", "SET", "stream-node-max-entries", "1");
          const real = Date.now();
          await appendAt([real - 3 * window, real - window / 2]);
          const ahead = real + 3 * window;
          const publisher = publisherOn(client, { catchUpWindowMs: window, now: () => ahead });
          const result = await publish(publisher, "new");
          assertEquals(result.clusters, ["east"]);
          assertEquals((await streamEntries(client)).map((e) => e.fields), [
            [MESSAGE_FIELD, "old-1"],
            [MESSAGE_FIELD, "new"],
          ]);
          await client.call("CONFIG", "SET", "stream-node-max-entries", "100");
        },
      );
      await t.step("no entry is appended for an event no cluster could take", async () => {
        const before = await client.call("XLEN", EVENTS_STREAM);
        await client.call("DEL", CLUSTERS_KEY);
        await publish(publisherOn(client), "nobody");
        assertEquals(await client.call("XLEN", EVENTS_STREAM), before);
      });
    });
  },
});

/** Claims of a verified token whose jti is the token itself. */
function claimsFor(token: string): GitHubClaims {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: "https://issuer",
    jti: token,
    iat: now,
    exp: now + 300,
    repository: "acme/app",
    repository_owner: "acme",
    repository_id: "2002",
  } as GitHubClaims;
}

Deno.test({
  name:
    "POST and GET /event on a real Valkey: a known cluster that is away is pending with why, then no_report; its report when it returns decides",
  ignore: withoutValkey(),
  fn: async (t) => {
    await withValkey(async (_valkey, client) => {
      const lines: LogFields[] = [];
      const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
      const registry = createRegistry();
      let clock = Date.now();
      const parts = valkeyWebParts(client, { channel: "ch", logger });
      const handler = createHandler({
        ...parts,
        verify: (token) => Promise.resolve(claimsFor(token)),
        authorize: createAuthorizer(orgOnlyPolicy()),
        statusWaiters: createStatusWaiters({ max: 10 }),
        statusReportTimeoutMs: 30_000,
        prefixes: ["ghcr.io/acme"],
        logger,
        metrics: createWebMetrics(registry),
        registry,
        readiness: {},
        now: () => new Date(clock),
      });
      const info = { remoteAddr: { hostname: "127.0.0.1", port: 1 } };
      const body = '{"image":"ghcr.io/acme/app:dev"}';
      const post = (token: string) =>
        handler(
          new Request("http://127.0.0.1/event", {
            method: "POST",
            headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
            body,
          }),
          info,
        );
      const get = async (path: string) => {
        const res = await handler(
          new Request(`http://127.0.0.1${path}`, { headers: { authorization: "Bearer reader" } }),
          info,
        );
        assertEquals(res.status, 200);
        return await res.json();
      };
      const requestLog = () => lines.filter((l) => l.msg === "request").at(-1)!;
      type Cluster = { cluster: string; state: string; reason?: string };
      const cluster = (status: { clusters: Cluster[] }, name: string) =>
        status.clusters.find((c) => c.cluster === name)!;
      const now = Date.now();
      await client.call("ZADD", CLUSTERS_KEY, now, "east", now - 5 * 60_000, "away");

      let accepted: { id: string; status: string; clusters: string[] } = {
        id: "",
        status: "",
        clusters: [],
      };
      await t.step("202 names both clusters; the log names the one away", async () => {
        const res = await post("t1");
        assertEquals(res.status, 202);
        accepted = await res.json();
        assertEquals(accepted.clusters, ["away", "east"]);
        assertEquals(requestLog().unreachable, ["away"]);
      });
      await t.step("at first: the away cluster is pending, with why", async () => {
        const status = await get(accepted.status);
        assertEquals([status.state, status.final], ["pending", false]);
        assertEquals(cluster(status, "away").state, "pending");
        assertMatch(cluster(status, "away").reason!, /not live when the event was published/);
        assertEquals(cluster(status, "east").reason, undefined);
      });
      await t.step(
        "after STATUS_REPORT_TIMEOUT: no_report with why, the event failed",
        async () => {
          await client.call(
            "HSET",
            statusKey(accepted.id),
            reportField("east"),
            JSON.stringify(report("east", { restarted: 1, complete: 1 })),
          );
          clock += 30_000;
          const status = await get(accepted.status);
          assertEquals([status.state, status.final], ["failed", true]);
          assertEquals(cluster(status, "away").state, "no_report");
          assertMatch(cluster(status, "away").reason!, /not live .*; no report within 30s/);
        },
      );
      await t.step("the cluster returns and reports: succeeded", async () => {
        await client.call(
          "HSET",
          statusKey(accepted.id),
          reportField("away"),
          JSON.stringify(report("away", { restarted: 1, complete: 1 })),
        );
        clock += 10 * 60_000;
        const status = await get(accepted.status);
        assertEquals([status.state, status.final], ["succeeded", true]);
        assertEquals(cluster(status, "away").reason, undefined);
      });
      await t.step(
        "a second use of the token answers the stored 202, appending nothing",
        async () => {
          const length = await client.call("XLEN", EVENTS_STREAM);
          const res = await post("t1");
          assertEquals(res.status, 202);
          assertEquals((await res.json()).id, accepted.id);
          assertEquals(await client.call("XLEN", EVENTS_STREAM), length);
        },
      );
      await t.step(
        "no known cluster: 503, nothing kept under the token, which works once one registers",
        async () => {
          await client.call("DEL", CLUSTERS_KEY);
          const length = await client.call("XLEN", EVENTS_STREAM);
          const res = await post("t2");
          assertEquals(res.status, 503);
          assertEquals(requestLog().code, "ERR_NO_SUBSCRIBER");
          assertEquals(await client.call("XLEN", EVENTS_STREAM), length);
          const { iss, jti, exp, iat } = claimsFor("t2");
          const claim = parts.replay.claim({ issuer: String(iss), jti, exp, iat, body });
          assertEquals(await client.call("EXISTS", claim.key), 0, "the token is still free");
          await client.call("ZADD", CLUSTERS_KEY, Date.now(), "east");
          const retry = await post("t2");
          assertEquals(retry.status, 202);
          assertEquals((await retry.json()).clusters, ["east"]);
          assertEquals(await client.call("EXISTS", claim.key), 1);
        },
      );
    });
  },
});

Deno.test({
  name:
    "createPublisher() with notifications and a sender: the audit field and the queue entry in the same step, the sender beside the message; with and without a token claim",
  ignore: withoutValkey(),
  fn: () =>
    withValkey(async (_valkey, client) => {
      const publisher = publisherOn(client);
      await client.call("ZADD", CLUSTERS_KEY, Date.now(), "east");
      const guard = createReplayGuard({ clockToleranceMs: 1000, maxTokenAgeMs: 600_000 });
      const now = Math.floor(Date.now() / 1000);
      for (const withClaim of [false, true]) {
        const eventId = crypto.randomUUID();
        const before = Date.now();
        const replay = withClaim
          ? {
            claim: guard.claim({ issuer: "i", jti: eventId, exp: now + 60, iat: now, body: "b" }),
            answer: { head: `{"id":"${eventId}"`, tail: "}" },
          }
          : undefined;
        const published = await publisher.publish({
          eventId,
          message: `message ${eventId}`,
          senderField: `sender ${eventId}`,
          binding: BINDING,
          notify: `{"repository":"acme/app","repositoryId":"2002"}`,
          ...(replay ? { replay } : {}),
        });
        assertEquals(published.clusters, ["east"]);
        assertEquals(published.answer !== undefined, withClaim);
        const record = fieldsOf(await client.call("HGETALL", statusKey(eventId)));
        assertEquals(record[NOTIFY_FIELD], `{"repository":"acme/app","repositoryId":"2002"}`);
        const due = Number(await client.call("ZSCORE", NOTIFY_DUE_KEY, eventId));
        assert(due >= before + NOTIFY_FIRST_CHECK_MS && due <= Date.now() + NOTIFY_FIRST_CHECK_MS);
        const entry = (await streamEntries(client)).at(-1)!;
        assertEquals(fieldsOf(entry.fields), {
          [MESSAGE_FIELD]: `message ${eventId}`,
          [SENDER_FIELD]: `sender ${eventId}`,
        });
      }
      // Without either, nothing of them is written.
      const { eventId } = await publish(publisher);
      assertEquals(
        fieldsOf(await client.call("HGETALL", statusKey(eventId)))[NOTIFY_FIELD],
        undefined,
      );
      assertEquals(await client.call("ZSCORE", NOTIFY_DUE_KEY, eventId), null);
      const entry = (await streamEntries(client)).at(-1)!;
      assertEquals(Object.keys(fieldsOf(entry.fields)), [MESSAGE_FIELD]);
    }),
});
