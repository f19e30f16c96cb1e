/**
 * The notifier (web/notifier.ts) and its record (web/notification_record.ts)
 * on a real Valkey-compatible server, with loopback receivers: two notifiers
 * (two web replicas) deliver each final event once per URL; an event is
 * notified only once final, a timed-out one without any read; a receiver that
 * fails twice gets the third try; a replica stopped mid-delivery hands the
 * event to the other; filtered states and gone records leave the queue.
 * The real programs are proven in tests/e2e/notifications_test.ts.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/eventually.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { BINDING, report } from "../../helpers/status_fixtures.ts";
import { connectValkey, startValkey, type TestValkey } from "../../helpers/valkey.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { createRegistry } from "../../../lib/metrics.ts";
import { BINDING_FIELD, reportField, statusKey } from "../../../shared/event_status.ts";
import type { ValkeyClient } from "../../../shared/valkey_client.ts";
import { parseNotifyUrls } from "../../../config/notify_targets.ts";
import { createWebMetrics } from "../../../web/metrics.ts";
import {
  createNotificationRecord,
  NOTIFY_DUE_KEY,
  NOTIFY_FIELD,
} from "../../../web/notification_record.ts";
import { verifyNotification } from "../../../web/notification_signature.ts";
import { type NotifierOptions, startNotifier } from "../../../web/notifier.ts";
import { createStatusReader } from "../../../web/status_store.ts";
import { repositoryHash } from "../../../web/request_steps.ts";

const SECRET = "a-shared-secret-of-at-least-32-characters";
const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };

interface Received {
  path: string;
  body: string;
  headers: Headers;
}

/** A loopback receiver: records every delivery; `answer` decides each status (default 200). */
function startReceiver(answer: (r: Received, n: number) => number | "hang" = () => 200) {
  const received: Received[] = [];
  const hanging = new Set<() => void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const r = { path: new URL(req.url).pathname, body: await req.text(), headers: req.headers };
    received.push(r);
    const status = answer(r, received.filter((x) => x.path === r.path).length);
    if (status === "hang") await new Promise<void>((resolve) => hanging.add(resolve));
    return new Response(null, { status: status === "hang" ? 200 : status });
  });
  return {
    received,
    url: `http://127.0.0.1:${server.addr.port}`,
    async stop() {
      for (const resolve of hanging) resolve();
      await server.shutdown();
    },
  };
}

const named = new Map<string, string>();
/** A readable name's event id (web's ids are UUIDs; anything else is dropped unread). */
function idOf(name: string): string {
  for (const [id, n] of named) if (n === name) return id;
  const id = `0b6f8c1e-0000-4000-8000-${String(named.size + 1).padStart(12, "0")}`;
  named.set(id, name);
  return id;
}
const nameOf = (id: string) => named.get(id) ?? id;

/** A status record as web and one cluster (east, of east and west) would leave it. */
async function record(client: ValkeyClient, name: string, reports: ReturnType<typeof report>[]) {
  const id = idOf(name);
  const key = statusKey(id);
  const binding = {
    ...BINDING,
    repository: repositoryHash("2002"),
    time: new Date().toISOString(),
    clusters: ["east", "west"],
  };
  await client.call("HSET", key, BINDING_FIELD, JSON.stringify(binding));
  const audit = { repository: "acme/app", repositoryId: "2002", runId: "77" };
  await client.call("HSET", key, NOTIFY_FIELD, JSON.stringify(audit));
  for (const r of reports) {
    await client.call("HSET", key, reportField(r.cluster), JSON.stringify(r));
  }
  await client.call("PEXPIRE", key, 600_000);
  await client.call("ZADD", NOTIFY_DUE_KEY, Date.now(), id);
}

function notifier(
  valkey: TestValkey,
  client: ValkeyClient,
  urls: string,
  extra: Partial<NotifierOptions> & { lines?: LogFields[] } = {},
) {
  const lines = extra.lines ?? [];
  const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
  const metrics = createWebMetrics(createRegistry());
  const controller = new AbortController();
  const running = startNotifier({
    targets: parseNotifyUrls(urls),
    states: ["succeeded", "failed", "no_match", "skipped", "dry_run"],
    format: "json",
    secret: SECRET,
    record: createNotificationRecord(client),
    reader: createStatusReader(client, logger),
    reportTimeoutMs: 3000,
    statusTtlMs: 600_000,
    logger,
    counter: metrics.notifications,
    signal: controller.signal,
    pollMs: 100,
    delivery: { backoffMs: () => 50, timeoutMs: 1000 },
    ...extra,
  });
  void valkey;
  return { controller, running, metrics, lines };
}

Deno.test({
  name:
    "two notifiers deliver each final event exactly once per URL, signed; a silent cluster's event once it times out",
  ...options,
  async fn() {
    const valkey = await startValkey();
    const receiver = startReceiver();
    const [a, b] = await Promise.all([connectValkey(valkey), connectValkey(valkey)]);
    const urls = `${receiver.url}/one,${receiver.url}/two`;
    const one = notifier(valkey, a, urls);
    const two = notifier(valkey, b, urls);
    try {
      const ok = [report("east", { restarted: 1, complete: 1 }), report("west", {})];
      await record(a, "ev-succeeded", ok);
      await record(a, "ev-failed", [report("east", { restarted: 1, rollout_failed: 1 })]);
      // west never reports: final (failed, no_report) only after the 3 s report timeout.
      await record(a, "ev-silent", [report("east", { restarted: 1, complete: 1 })]);
      await eventually("six deliveries", () => receiver.received.length >= 6 || undefined, 15_000);
      // Longer than a poll and a recheck: a second delivery would have come by now.
      await new Promise((r) => setTimeout(r, 2500));
      const seen = receiver.received.map((r) => `${nameOf(JSON.parse(r.body).event_id)} ${r.path}`);
      assertEquals(seen.toSorted(), [
        "ev-failed /one",
        "ev-failed /two",
        "ev-silent /one",
        "ev-silent /two",
        "ev-succeeded /one",
        "ev-succeeded /two",
      ]);
      const states = Object.fromEntries(
        receiver.received.map((
          r,
        ) => [nameOf(JSON.parse(r.body).event_id), JSON.parse(r.body).state]),
      );
      assertEquals(states, {
        "ev-succeeded": "succeeded",
        "ev-failed": "failed",
        "ev-silent": "failed",
      });
      for (const r of receiver.received) {
        const now = Math.floor(Date.now() / 1000);
        assert(
          verifyNotification({ secret: SECRET, body: r.body, headers: r.headers, nowSeconds: now }),
        );
        assertEquals(JSON.parse(r.body).run_id, "77");
      }
      const delivered = (n: typeof one) => n.metrics.notifications.get({ result: "delivered" });
      assertEquals(delivered(one) + delivered(two), 6);
      assertEquals(await a.call("ZCARD", NOTIFY_DUE_KEY), 0);
    } finally {
      one.controller.abort();
      two.controller.abort();
      await Promise.all([one.running.stopped, two.running.stopped]);
      a.disconnect();
      b.disconnect();
      await receiver.stop();
      await valkey.stop();
    }
  },
});

Deno.test({
  name:
    "a receiver that answers 500 twice gets the third try; one that always fails is given up, counted and logged without its URL",
  ...options,
  async fn() {
    const valkey = await startValkey();
    const receiver = startReceiver((r, n) => r.path === "/flaky" ? (n <= 2 ? 500 : 200) : 503);
    const client = await connectValkey(valkey);
    const lines: LogFields[] = [];
    const one = notifier(
      valkey,
      client,
      `${receiver.url}/flaky,${receiver.url}/down?key=SECRETKEY`,
      {
        lines,
      },
    );
    try {
      await record(client, "ev-1", [
        report("east", { restarted: 1, complete: 1 }),
        report("west", {}),
      ]);
      await eventually(
        "given up",
        () => one.metrics.notifications.get({ result: "failed" }) || undefined,
        15_000,
      );
      await eventually(
        "delivered",
        () => one.metrics.notifications.get({ result: "delivered" }) || undefined,
        15_000,
      );
      assertEquals(receiver.received.filter((r) => r.path === "/flaky").length, 3);
      assertEquals(receiver.received.filter((r) => r.path === "/down").length, 3);
      const failed = lines.find((l) => l.msg === "notification not delivered")!;
      assertEquals([failed.target, failed.attempts, failed.reason], [receiver.url, 3, "HTTP 503"]);
      assert(!JSON.stringify(lines).includes("SECRETKEY"), "a URL's query reached the log");
    } finally {
      one.controller.abort();
      await one.running.stopped;
      client.disconnect();
      await receiver.stop();
      await valkey.stop();
    }
  },
});

Deno.test({
  name:
    "a notifier stopped mid-delivery hands the event to the other at once; filtered states and gone records leave the queue unsent",
  ...options,
  async fn() {
    const valkey = await startValkey();
    let hang = true;
    const receiver = startReceiver(() => (hang ? "hang" : 200));
    const [a, b] = await Promise.all([connectValkey(valkey), connectValkey(valkey)]);
    const first = notifier(valkey, a, `${receiver.url}/hook`, {
      delivery: { timeoutMs: 60_000, backoffMs: () => 50 },
    });
    let second: ReturnType<typeof notifier> | undefined;
    let third: ReturnType<typeof notifier> | undefined;
    try {
      await record(a, "ev-handed", [
        report("east", { restarted: 1, complete: 1 }),
        report("west", {}),
      ]);
      await eventually(
        "a delivery in flight",
        () => receiver.received.length === 1 || undefined,
        10_000,
      );
      // Running already: it finds the event claimed and puts it off by a quarter of the lease.
      second = notifier(valkey, b, `${receiver.url}/hook`);
      await new Promise((r) => setTimeout(r, 1500));
      hang = false;
      first.controller.abort();
      await first.running.stopped;
      // Handed back at once, not after the 30 s the other had put it off by.
      await eventually("handed over", () => receiver.received.length === 2 || undefined, 5000);
      assertEquals(second.metrics.notifications.get({ result: "delivered" }), 1);
      // The cut-off try may have arrived: the same delivery id lets the receiver drop the repeat.
      const ids = receiver.received.map((r) => r.headers.get("x-kuberollouttrigger-delivery"));
      assertEquals(ids[0], ids[1]);
      second.controller.abort();
      await second.running.stopped;

      // A state NOTIFY_STATES leaves out, and a record that is gone: off the queue, unsent.
      third = notifier(valkey, b, `${receiver.url}/hook`, { states: ["failed"] });
      await record(b, "ev-filtered", [
        report("east", { restarted: 1, complete: 1 }),
        report("west", {}),
      ]);
      await b.call("ZADD", NOTIFY_DUE_KEY, Date.now(), idOf("ev-gone"));
      await eventually(
        "queue empty",
        async () => (await b.call("ZCARD", NOTIFY_DUE_KEY)) === 0 || undefined,
        10_000,
      );
      assertEquals(receiver.received.length, 2);
      // The gone one is counted and logged as never notified; the filtered one is not.
      assertEquals(third!.metrics.notifications.get({ result: "expired" }), 1);
      // No mark for a record that is gone: nothing is written that would live for ever.
      assertEquals(await b.call("EXISTS", statusKey(idOf("ev-gone"))), 0);
    } finally {
      for (const n of [first, second, third]) n?.controller.abort();
      await Promise.all([first, second, third].map((n) => n?.running.stopped));
      a.disconnect();
      b.disconnect();
      await receiver.stop();
      await valkey.stop();
    }
  },
});

Deno.test({
  name:
    "security: audit fields that are not the event's are left out; a record written back after its TTL is never notified again",
  ...options,
  async fn() {
    const valkey = await startValkey();
    const receiver = startReceiver();
    const client = await connectValkey(valkey);
    const lines: LogFields[] = [];
    const one = notifier(valkey, client, `${receiver.url}/hook`, { lines, statusTtlMs: 5000 });
    try {
      const done = [report("east", { restarted: 1, complete: 1 }), report("west", {})];
      await record(client, "swapped", done);
      // Someone with Valkey access swaps in another repository's run.
      const forged = { repository: "evil/repo", repositoryId: "666", runId: "1" };
      await client.call("HSET", statusKey(idOf("swapped")), NOTIFY_FIELD, JSON.stringify(forged));
      await eventually("delivered", () => receiver.received.length === 1 || undefined, 10_000);
      const body = JSON.parse(receiver.received[0].body);
      assertEquals([body.repository, body.repository_id, body.run_id], ["", "", undefined]);
      assert(lines.some((l) => String(l.msg).startsWith("notification audit fields do not match")));

      // A record copied back long after its event ended: older than STATUS_TTL, never notified.
      await record(client, "written-back", done);
      const old = new Date(Date.now() - 3_600_000).toISOString();
      const binding = {
        ...BINDING,
        repository: repositoryHash("2002"),
        time: old,
        clusters: ["east", "west"],
      };
      await client.call(
        "HSET",
        statusKey(idOf("written-back")),
        BINDING_FIELD,
        JSON.stringify(binding),
      );
      await eventually(
        "dropped",
        async () =>
          (await client.call("ZSCORE", NOTIFY_DUE_KEY, idOf("written-back"))) === null || undefined,
        10_000,
      );
      assertEquals(receiver.received.length, 1);
      assertEquals(one.metrics.notifications.get({ result: "expired" }), 1);
    } finally {
      one.controller.abort();
      await one.running.stopped;
      client.disconnect();
      await receiver.stop();
      await valkey.stop();
    }
  },
});
