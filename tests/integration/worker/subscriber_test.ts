/**
 * The channel subscription against a real Valkey-compatible server: a lost
 * connection is a counted, logged gap; a shutdown we asked for is neither.
 */

import { Valkey } from "iovalkey";
import { assertEquals, assertMatch } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/cluster.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { startValkey } from "../../helpers/valkey.ts";
import { createLogger, type LogFields, type Logger } from "../../../lib/log.ts";
import { createRegistry } from "../../../lib/metrics.ts";
import { parseHostPort } from "../../../lib/setting_values.ts";
import { createWorkerMetrics } from "../../../worker/metrics.ts";
import { createValkeyConnection } from "../../../worker/valkey.ts";
import type { ValkeySettings } from "../../../shared/valkey_settings.ts";
import { subscribe } from "../../../worker/subscriber.ts";

function subscriberConnection(settings: ValkeySettings, logger: Logger) {
  return createValkeyConnection(settings, {
    name: "kuberollouttrigger-worker-subscriber",
    logger,
    offlineQueue: true,
    autoResubscribe: false,
  });
}

Deno.test({
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  name: "subscribe() counts a dropped connection as a gap, and a requested close as none, at info",
  async fn(t) {
    const valkey = await startValkey();
    const lines: (LogFields & { msg: string; level: string })[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const metrics = createWorkerMetrics(createRegistry());
    const subscription = subscribe({
      client: subscriberConnection({
        valkeyAddr: parseHostPort(valkey.addr),
        valkeyUsername: "",
        valkeyPassword: "",
        valkeyTls: false,
        valkeyTimeout: 2000,
      }, logger),
      channel: "krt-subscriber-test",
      logger,
      metrics,
      onMessage: () => Promise.resolve(),
    });
    try {
      await eventually("subscribed", () => subscription.subscribed() || undefined);
      await t.step("a server restart is a gap, logged at warn, then resubscribed", async () => {
        await valkey.restart();
        await eventually("resubscribed", () => lines.find((l) => l.msg === "resubscribed"), 20_000);
        assertEquals(metrics.subscriptionGaps.get(), 1);
        assertEquals(
          lines.filter((l) => l.level === "warn").map((l) => l.msg),
          [
            "valkey connection lost; reconnecting",
            "subscription lost; events published until it is back are not received",
          ],
        );
      });
      await t.step("close() is no gap and logs nothing at warn", async () => {
        lines.length = 0;
        await subscription.close();
        await eventually("closed", () => lines.find((l) => l.msg === "valkey connection closed"));
        assertEquals(metrics.subscriptionGaps.get(), 1);
        assertEquals(metrics.subscribed.get(), 0);
        assertEquals(lines.map((l) => [l.level, l.msg]), [["info", "valkey connection closed"]]);
      });
    } finally {
      await subscription.close();
      await valkey.stop();
    }
  },
});

Deno.test({
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  name: "subscribe() retries a refused SUBSCRIBE while connected, not only after a reconnect",
  async fn() {
    const valkey = await startValkey();
    const admin = new Valkey({ host: valkey.host, port: valkey.port });
    // An ACL user that may connect but may not use any channel yet.
    await admin.call("ACL", "SETUSER", "worker", "on", ">pw", "~*", "resetchannels", "+@all");
    const lines: (LogFields & { msg: string; level: string })[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const subscription = subscribe({
      client: subscriberConnection({
        valkeyAddr: parseHostPort(valkey.addr),
        valkeyUsername: "worker",
        valkeyPassword: "pw",
        valkeyTls: false,
        valkeyTimeout: 2000,
      }, logger),
      channel: "krt-acl-test",
      logger,
      metrics: createWorkerMetrics(createRegistry()),
      onMessage: () => Promise.resolve(),
    });
    try {
      const refused = await eventually(
        "a refused subscribe",
        () => lines.find((l) => l.msg === "subscribe failed; retrying"),
      );
      assertMatch(String(refused.error), /^NOPERM/);
      await admin.call("ACL", "SETUSER", "worker", "&*");
      await eventually("subscribed", () => subscription.subscribed() || undefined, 20_000);
      assertEquals(lines.filter((l) => l.msg === "valkey connected").length, 1, "no reconnect");
    } finally {
      await subscription.close();
      admin.disconnect();
      await valkey.stop();
    }
  },
});
