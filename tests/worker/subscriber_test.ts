/**
 * subscribe() with a stand-in connection that records the subscription it is
 * asked for and lets the test play the server: the subscription confirmed or
 * lost (onStateChange) and messages arriving (onMessage). What an operator
 * sees: readiness, the subscribed gauge and the gap counter, one warn line per
 * gap and a "resubscribed" line with its length, handlers run one at a time in
 * order, and a shutdown that finishes the event in hand without calling it a
 * gap. The same against a real server: tests/integration/worker/subscriber_test.ts.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { createLogger, type LogFields } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import type { ValkeyClient, ValkeySubscription } from "../../shared/valkey_client.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";
import { subscribe, type SubscribeOptions } from "../../worker/subscriber.ts";

const CHANNEL = "krt-events";
const GAP = "subscription lost; events published until it is back are not received";

/** Lets promise chains and zero-delay timers run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
}

/** A subscriber wired to a stand-in connection the test drives. */
function harness(extra: Partial<SubscribeOptions> = {}) {
  const lines: (LogFields & { msg: string; level: string })[] = [];
  const metrics = createWorkerMetrics(createRegistry());
  let now = 1_000_000;
  const server = {
    subscription: undefined as ValkeySubscription | undefined,
    onStateChange: (_up: boolean): void => {
      throw new Error("connect() was not called");
    },
    connects: 0,
    disconnected: false,
  };
  const subscription = subscribe({
    connect: (subscription, onStateChange) => {
      server.connects++;
      server.subscription = subscription;
      server.onStateChange = onStateChange;
      const client: ValkeyClient = {
        get connected() {
          return !server.disconnected;
        },
        call: () => Promise.reject(new Error("a subscriber connection takes no commands")),
        transaction: () => Promise.reject(new Error("a subscriber connection takes no commands")),
        // The real client reports its close as a state change too.
        disconnect: () => {
          server.disconnected = true;
          onStateChange(false);
        },
      };
      return client;
    },
    channel: CHANNEL,
    logger: createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) }),
    metrics,
    onMessage: () => Promise.resolve(),
    now: () => now,
    ...extra,
  });
  return {
    subscription,
    server,
    lines,
    metrics,
    msgs: () => lines.map((l) => l.msg),
    /** A message arriving on `channel` (ours by default). */
    deliver: (message: string, channel = CHANNEL) =>
      server.subscription!.onMessage(channel, message),
    advance: (ms: number) => now += ms,
  };
}

/** A handler whose calls the test finishes one by one. */
function heldHandler() {
  const started: string[] = [];
  const finish: (() => void)[] = [];
  return {
    started,
    onMessage: (message: string) => {
      started.push(message);
      return new Promise<void>((resolve) => finish.push(resolve));
    },
    /** Finishes the oldest call still running. */
    finishNext: async () => {
      finish.shift()!();
      await settle();
    },
  };
}

Deno.test("subscribe() asks the connection for the channel, sharded as told, and connects once", () => {
  const classic = harness();
  assertEquals(classic.server.connects, 1);
  assertEquals(classic.server.subscription?.channels, [CHANNEL]);
  assert(!classic.server.subscription?.sharded);
  const sharded = harness({ sharded: true });
  assertEquals(sharded.server.subscription?.sharded, true);
});

Deno.test("subscribe() is subscribed only once the server confirmed the subscription", () => {
  const h = harness();
  assertEquals(h.subscription.subscribed(), false);
  assertEquals(h.metrics.subscribed.get(), 0);
  // A connection that fails before it ever subscribed is no gap: there was nothing to lose.
  h.server.onStateChange(false);
  assertEquals(h.metrics.subscriptionGaps.get(), 0);
  assertEquals(h.msgs(), []);
  h.server.onStateChange(true);
  assertEquals(h.subscription.subscribed(), true);
  assertEquals(h.metrics.subscribed.get(), 1);
  assertEquals(h.lines.map((l) => [l.level, l.msg, l.channel]), [
    ["info", "subscribed", CHANNEL],
  ]);
});

Deno.test("subscribe() logs and counts each lost subscription once, and the gap's length when it is back", () => {
  const h = harness();
  h.server.onStateChange(true);
  h.server.onStateChange(false);
  // Reconnect attempts that fail report "down" again: still the same gap.
  h.server.onStateChange(false);
  h.server.onStateChange(false);
  assertEquals(h.subscription.subscribed(), false, "ready while the subscription is lost");
  assertEquals(h.metrics.subscribed.get(), 0);
  assertEquals(h.metrics.subscriptionGaps.get(), 1);
  assertEquals(h.lines.filter((l) => l.level === "warn").map((l) => l.msg), [GAP]);
  h.advance(1500);
  h.server.onStateChange(true);
  h.server.onStateChange(true);
  assertEquals(h.subscription.subscribed(), true);
  assertEquals(h.metrics.subscribed.get(), 1);
  const back = h.lines.filter((l) => l.msg === "resubscribed");
  assertEquals(back.map((l) => [l.level, l.channel, l.gap_ms]), [["info", CHANNEL, 1500]]);
  assertEquals(h.msgs().filter((m) => m === "subscribed").length, 1, "subscribed said again");

  // A second loss is a second gap, with its own length.
  h.server.onStateChange(false);
  h.advance(20);
  h.server.onStateChange(true);
  assertEquals(h.metrics.subscriptionGaps.get(), 2);
  assertEquals(h.lines.filter((l) => l.msg === "resubscribed").map((l) => l.gap_ms), [1500, 20]);
  assertEquals(h.msgs().filter((m) => m === GAP).length, 2);
});

Deno.test("subscribe() hands messages on one at a time, in the order they came", async () => {
  const handler = heldHandler();
  const h = harness({ onMessage: handler.onMessage });
  h.server.onStateChange(true);
  for (const m of ["a", "b", "c"]) h.deliver(m);
  await settle();
  assertEquals(handler.started, ["a"], "b started before a was handled");
  await handler.finishNext();
  assertEquals(handler.started, ["a", "b"]);
  await handler.finishNext();
  await handler.finishNext();
  assertEquals(handler.started, ["a", "b", "c"]);
});

Deno.test("subscribe() logs a failed handler and goes on with the next message", async () => {
  const handled: string[] = [];
  const h = harness({
    onMessage: (message) => {
      if (message === "bad") return Promise.reject(new Error("the API server said no"));
      handled.push(message);
      return Promise.resolve();
    },
  });
  h.server.onStateChange(true);
  for (const m of ["bad", "good"]) h.deliver(m);
  await settle();
  assertEquals(handled, ["good"]);
  const failed = h.lines.find((l) => l.msg === "event handling failed");
  assertEquals([failed?.level, failed?.error], ["error", "the API server said no"]);
});

Deno.test("subscribe() ignores messages on any other channel", async () => {
  const handled: string[] = [];
  const h = harness({ onMessage: (m) => Promise.resolve(handled.push(m)) });
  h.server.onStateChange(true);
  h.deliver("theirs", "krt-events:status");
  h.deliver("ours");
  h.deliver("also theirs", "other");
  await settle();
  assertEquals(handled, ["ours"]);
});

Deno.test("subscribe().close() finishes the message in hand, takes no more, then disconnects", async () => {
  const handler = heldHandler();
  const h = harness({ onMessage: handler.onMessage });
  h.server.onStateChange(true);
  h.deliver("in hand");
  h.deliver("queued");
  await settle();
  let closed = false;
  const closing = h.subscription.close().then(() => closed = true);
  // Not ready from the moment shutdown starts.
  assertEquals(h.subscription.subscribed(), false);
  assertEquals(h.metrics.subscribed.get(), 0);
  h.deliver("after close");
  await settle();
  assertEquals(closed, false, "closed while a message was in hand");
  assertEquals(h.server.disconnected, false, "disconnected while a message was in hand");
  await handler.finishNext(); // "in hand"
  await handler.finishNext(); // "queued": already taken before close()
  await closing;
  assert(h.server.disconnected);
  assertEquals(handler.started, ["in hand", "queued"]);
  // The disconnect's own state change is no gap.
  assertEquals(h.metrics.subscriptionGaps.get(), 0);
  assertEquals(h.lines.filter((l) => l.level === "warn"), []);
});

Deno.test("subscribe().close() waits for a handler that never finishes only as long as told", async () => {
  const h = harness({ onMessage: () => new Promise(() => {}) });
  h.server.onStateChange(true);
  h.deliver("stuck");
  await settle();
  const started = performance.now();
  await h.subscription.close(50);
  assert(h.server.disconnected);
  assert(performance.now() - started < 1000, "close() waited past its bound");
  assertEquals(h.metrics.subscriptionGaps.get(), 0);
  assertEquals(h.msgs().filter((m) => m === GAP), []);
});

Deno.test("subscribe().close() right after a loss is no second gap, and no resubscription after it counts", async () => {
  const h = harness();
  h.server.onStateChange(true);
  h.server.onStateChange(false);
  const closing = h.subscription.close(0);
  // A reconnect that lands while shutting down does not make the replica ready again.
  h.server.onStateChange(true);
  assertEquals(h.subscription.subscribed(), false);
  assertEquals(h.metrics.subscribed.get(), 0);
  assertEquals(h.metrics.subscriptionGaps.get(), 1);
  assertEquals(h.msgs().filter((m) => m === "resubscribed"), []);
  await closing;
});
