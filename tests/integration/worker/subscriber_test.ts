/**
 * The worker's channel subscription (worker/subscriber.ts on the product's
 * client, wired as worker/worker.ts wires it) against a real Valkey-compatible
 * server: messages reach the handler one at a time in order, a lost
 * connection is a counted, logged gap, a shutdown we asked for is neither,
 * and a channel the ACL refuses is retried until it is granted.
 */

import { assert, assertEquals, assertMatch } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/eventually.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { publishRaw, startValkey, testSettings, valkeyCall } from "../../helpers/valkey.ts";
import { createLogger, type LogFields, type Logger } from "../../../lib/log.ts";
import { createRegistry } from "../../../lib/metrics.ts";
import { createValkeyClient } from "../../../shared/valkey_client.ts";
import type { ValkeySettings } from "../../../shared/valkey_settings.ts";
import { createWorkerMetrics } from "../../../worker/metrics.ts";
import { subscribe } from "../../../worker/subscriber.ts";

const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };

type Line = LogFields & { msg: string; level: string };

function recordingLogger() {
  const lines: Line[] = [];
  const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
  return { lines, logger };
}

/** subscribe() connected as runWorker connects it. */
function workerSubscription(
  settings: ValkeySettings,
  wiring: {
    channel: string;
    logger: Logger;
    onMessage?: (message: string) => Promise<unknown>;
  },
) {
  const metrics = createWorkerMetrics(createRegistry());
  const subscription = subscribe({
    connect: (subscription, onStateChange) =>
      createValkeyClient(settings, {
        name: "kuberollouttrigger-worker-subscriber",
        logger: wiring.logger,
        subscription,
        onStateChange,
      }),
    channel: wiring.channel,
    logger: wiring.logger,
    metrics,
    onMessage: wiring.onMessage ?? (() => Promise.resolve()),
  });
  return { subscription, metrics };
}

Deno.test({
  ...options,
  name: "subscribe() hands the channel's messages to the handler one at a time, in order",
  async fn() {
    const valkey = await startValkey();
    const { logger } = recordingLogger();
    const handled: string[] = [];
    let inFlight = 0;
    let overlapped = false;
    const { subscription } = workerSubscription(testSettings(valkey), {
      channel: "krt-order",
      logger,
      onMessage: async (message) => {
        overlapped ||= inFlight++ > 0;
        // A slow first message: the next ones must wait for it.
        await new Promise((r) => setTimeout(r, message === "m0" ? 200 : 5));
        handled.push(message);
        inFlight--;
      },
    });
    try {
      await eventually("subscribed", () => subscription.subscribed(), 10_000, 10);
      for (let i = 0; i < 20; i++) assertEquals(await publishRaw(valkey, "krt-order", `m${i}`), 1);
      await publishRaw(valkey, "krt-elsewhere", "not ours");
      await eventually("20 messages handled", () => handled.length === 20, 10_000, 10);
      assertEquals(handled, Array.from({ length: 20 }, (_, i) => `m${i}`));
      assert(!overlapped, "two messages were handled at once");
    } finally {
      await subscription.close();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name: "subscribe() counts a dropped connection as a gap, and a requested close as none",
  async fn(t) {
    const valkey = await startValkey();
    const { lines, logger } = recordingLogger();
    const { subscription, metrics } = workerSubscription(testSettings(valkey), {
      channel: "krt-subscriber-test",
      logger,
    });
    try {
      await eventually("subscribed", () => subscription.subscribed(), 10_000, 10);
      assertEquals(metrics.subscribed.get(), 1);
      assertEquals(
        lines.filter((l) => l.msg === "subscribed").map((l) => l.channel),
        ["krt-subscriber-test"],
      );
      await t.step("a server restart is one gap, logged at warn, then resubscribed", async () => {
        await valkey.restart();
        const back = await eventually(
          "resubscribed",
          () => lines.find((l) => l.msg === "resubscribed"),
          20_000,
        );
        assertEquals(back.level, "info");
        assertEquals(back.channel, "krt-subscriber-test");
        assert(typeof back.gap_ms === "number" && back.gap_ms >= 0, `gap_ms ${back.gap_ms}`);
        assertEquals(metrics.subscriptionGaps.get(), 1);
        assertEquals(metrics.subscribed.get(), 1);
        // Refused reconnects while the server starts say so, once; the gap is told once.
        assertEquals(
          lines.filter((l) => l.level === "warn" && l.msg !== "valkey connection error")
            .map((l) => l.msg),
          [
            "valkey connection lost; reconnecting",
            "subscription lost; events published until it is back are not received",
          ],
        );
        assertEquals(await publishRaw(valkey, "krt-subscriber-test", "after"), 1);
      });
      await t.step("close() is no gap and logs nothing at warn", async () => {
        lines.length = 0;
        await subscription.close();
        await eventually("closed", () => lines.find((l) => l.msg === "valkey connection closed"));
        assertEquals(metrics.subscriptionGaps.get(), 1);
        assertEquals(metrics.subscribed.get(), 0);
        assert(!subscription.subscribed());
        assertEquals(lines.map((l) => [l.level, l.msg]), [["info", "valkey connection closed"]]);
        await eventually(
          "no subscriber left on the server",
          async () => await publishRaw(valkey, "krt-subscriber-test", "gone") === 0,
          5000,
          20,
        );
      });
    } finally {
      await subscription.close();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "subscribe() retries a SUBSCRIBE the ACL refuses, says so once, and subscribes once the channel is granted",
  async fn() {
    const valkey = await startValkey();
    // An ACL user that may connect but may not use any channel yet.
    await valkeyCall(
      valkey,
      "ACL",
      "SETUSER",
      "worker",
      "on",
      ">pw",
      "~*",
      "resetchannels",
      "+@all",
    );
    const { lines, logger } = recordingLogger();
    const handled: string[] = [];
    const { subscription, metrics } = workerSubscription(
      testSettings(valkey, { username: "worker", password: "pw" }),
      {
        channel: "krt-acl-test",
        logger,
        onMessage: (message) => Promise.resolve(handled.push(message)),
      },
    );
    try {
      const refused = await eventually(
        "a refused subscribe",
        () => lines.find((l) => l.msg === "valkey connection error"),
      );
      assertEquals(refused.level, "warn");
      assertMatch(String(refused.error), /^NOPERM/);
      // Retried with backoff meanwhile: the same refusal is not logged again, and none of it
      // counts as subscribed (readiness stays false) or as a gap.
      await new Promise((r) => setTimeout(r, 1000));
      assertEquals(lines.filter((l) => l.msg === "valkey connection error").length, 1);
      assert(!subscription.subscribed());
      assertEquals(metrics.subscribed.get(), 0);
      assertEquals(metrics.subscriptionGaps.get(), 0);
      assert(!JSON.stringify(lines).includes('"pw"'), "the password reached the log");

      await valkeyCall(valkey, "ACL", "SETUSER", "worker", "&*");
      await eventually("subscribed", () => subscription.subscribed(), 20_000, 10);
      assertEquals(lines.filter((l) => l.msg === "valkey connected").length, 1);
      assertEquals(lines.filter((l) => l.msg === "subscribed").length, 1);
      assertEquals(metrics.subscribed.get(), 1);
      assertEquals(await publishRaw(valkey, "krt-acl-test", "granted"), 1);
      await eventually("the message handled", () => handled.length === 1, 5000, 10);
      assertEquals(handled, ["granted"]);
    } finally {
      await subscription.close();
      await valkey.stop();
    }
  },
});
