/**
 * The worker's two Valkey connections through a Sentinel failover, wired as
 * worker/worker.ts wires them: the subscription (worker/subscriber.ts)
 * subscribes again on the primary the Sentinels name next, with one counted
 * gap and a "resubscribed" line each time, and the command connection's
 * claims (worker/coordination.ts) work on the new primary. A primary, a
 * replica and three Sentinels, all on loopback. How the client itself finds
 * the primary (ROLE, TLS) is proven in tests/integration/shared/valkey_client_test.ts;
 * with web, a cluster and events under load in tests/e2e/sentinel_failover_test.ts.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/eventually.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { startSentinelGroup, valkeyCall } from "../../helpers/valkey.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { createRegistry } from "../../../lib/metrics.ts";
import { parseHostPort } from "../../../lib/setting_values.ts";
import { createValkeyClient } from "../../../shared/valkey_client.ts";
import type { ValkeySettings } from "../../../shared/valkey_settings.ts";
import { createCoordinator } from "../../../worker/coordination.ts";
import { createWorkerMetrics } from "../../../worker/metrics.ts";
import { subscribe } from "../../../worker/subscriber.ts";

const CHANNEL = "krt-failover";
const SUBSCRIBER = "kuberollouttrigger-worker-subscriber";
const COMMANDS = "kuberollouttrigger-worker-commands";

Deno.test({
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  name:
    "the worker's subscription and claims follow the primary the Sentinels name, after a manual failover and after the primary dies",
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "krt-worker-failover-" });
    const group = await startSentinelGroup(dir);
    const lines: (LogFields & { msg: string; level: string })[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const settings: ValkeySettings = {
      valkeySentinels: group.sentinels.map(parseHostPort),
      valkeySentinelMaster: group.master,
      valkeyUsername: "",
      valkeyPassword: "",
      valkeyTls: false,
      valkeyTimeout: 1000,
    };
    const metrics = createWorkerMetrics(createRegistry());
    const handled: string[] = [];
    const commands = createValkeyClient(settings, { name: COMMANDS, logger });
    const subscription = subscribe({
      connect: (subscription, onStateChange) =>
        createValkeyClient(settings, { name: SUBSCRIBER, logger, subscription, onStateChange }),
      channel: CHANNEL,
      logger,
      metrics,
      onMessage: (message) => Promise.resolve(handled.push(message)),
    });
    const coordinator = createCoordinator({
      client: commands,
      clusterName: "prod",
      windowMs: 0,
      logger,
    });
    /** The connection's "valkey connected" line naming `primary`, logged after line `from`. */
    const connectedTo = (name: string, primary: string, from: number) =>
      eventually(
        `${name} connected to ${primary}`,
        () =>
          lines.slice(from).find((l) =>
            l.msg === "valkey connected" && l.connection === name && l.primary === primary
          ),
        30_000,
      );
    /** Publishes on `primary` until the subscription receives it there. */
    const delivered = async (primary: string, message: string) => {
      const addr = parseHostPort(primary);
      await eventually(
        `${message} received through ${primary}`,
        async () => Number(await valkeyCall(addr, "PUBLISH", CHANNEL, message)) === 1,
        30_000,
      );
      await eventually(`${message} handled`, () => handled.includes(message), 5000, 10);
    };
    /** A claim that counts: claimed by one replica, a duplicate for the next. */
    const claimsWork = () =>
      eventually("claims on the primary", async () => {
        const event = crypto.randomUUID();
        if (await coordinator.claim(event, "ns/app", "ghcr.io/acme/app") !== "claimed") {
          return false;
        }
        return await coordinator.claim(event, "ns/app", "ghcr.io/acme/app") === "duplicate";
      }, 30_000);
    try {
      await t.step("subscribed and claiming on the primary the Sentinels name", async () => {
        await connectedTo(SUBSCRIBER, group.primary.addr, 0);
        await connectedTo(COMMANDS, group.primary.addr, 0);
        await eventually("subscribed", () => subscription.subscribed(), 10_000, 10);
        await delivered(group.primary.addr, "before");
        await claimsWork();
        assertEquals(metrics.subscriptionGaps.get(), 0);
      });

      await t.step(
        "a manual failover (the old primary stays up): one gap, resubscribed on the new primary",
        async () => {
          const from = lines.length;
          const [host, port] = group.sentinels[0].split(":");
          assertEquals(
            await valkeyCall({ host, port: Number(port) }, "SENTINEL", "FAILOVER", group.master),
            "OK",
          );
          // The Sentinels disconnect the demoted primary's clients when they reconfigure it,
          // some seconds after the promotion; ours then ask them again. (Until then the
          // subscription is on the old primary and hears nothing published on the new one.)
          await connectedTo(SUBSCRIBER, group.replica.addr, from);
          await eventually("resubscribed", () => subscription.subscribed(), 30_000, 10);
          const back = lines.slice(from).filter((l) => l.msg === "resubscribed");
          assertEquals(back.length, 1);
          assert(typeof back[0].gap_ms === "number" && back[0].gap_ms >= 0);
          assertEquals(metrics.subscriptionGaps.get(), 1);
          await delivered(group.replica.addr, "after manual failover");
          await connectedTo(COMMANDS, group.replica.addr, from);
          await claimsWork();
        },
      );

      await t.step(
        "the new primary dies: one more gap, resubscribed on the old one once it is promoted",
        async () => {
          const from = lines.length;
          await group.replica.stop();
          await connectedTo(SUBSCRIBER, group.primary.addr, from);
          await eventually("resubscribed", () => subscription.subscribed(), 30_000, 10);
          assertEquals(lines.slice(from).filter((l) => l.msg === "resubscribed").length, 1);
          assertEquals(
            lines.slice(from).filter((l) => l.msg.startsWith("subscription lost")).length,
            1,
          );
          assertEquals(metrics.subscriptionGaps.get(), 2);
          await delivered(group.primary.addr, "after the primary died");
          await connectedTo(COMMANDS, group.primary.addr, from);
          await claimsWork();
        },
      );
      // Each message handled once, in the order published.
      assertEquals(handled, ["before", "after manual failover", "after the primary died"]);
    } finally {
      await subscription.close();
      commands.disconnect();
      await group.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
