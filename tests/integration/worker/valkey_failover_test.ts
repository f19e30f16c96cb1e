/**
 * The worker's two Valkey connections through a Sentinel failover, wired as
 * worker/worker.ts wires them: the event stream reader
 * (worker/event_stream_reader.ts) reads again on the primary the Sentinels
 * name next, with each appended event handled once, in order, and the
 * command connection's claims (worker/coordination.ts) work on the new
 * primary. A primary, a
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
import { startStreamReader } from "../../../worker/event_stream_reader.ts";
import { EVENTS_STREAM } from "../../../shared/event_stream.ts";

const SUBSCRIBER = "kuberollouttrigger-worker-events";
const COMMANDS = "kuberollouttrigger-worker-commands";

Deno.test({
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  name:
    "the worker's event stream reader and claims follow the primary the Sentinels name, after a manual failover and after the primary dies",
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
    const stop = new AbortController();
    const readerClient = createValkeyClient(settings, { name: SUBSCRIBER, logger });
    const reader = startStreamReader({
      client: readerClient,
      group: "prod",
      consumer: "replica-1",
      logger,
      events: {
        reading: (on) => metrics.streamReading.set(on ? 1 : 0),
        failed: () => metrics.streamFailures.inc(),
        claimed: (n) => metrics.streamClaimed.inc({}, n),
      },
      handle: async (entries, ack) => {
        for (const entry of entries) {
          handled.push(entry.message ?? "(trimmed)");
          await ack(entry.id);
        }
      },
      signal: stop.signal,
      blockMs: 300,
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
    /** Appends to the stream on `primary` (once it takes writes) and waits for the reader to handle it. */
    const delivered = async (primary: string, message: string) => {
      const addr = parseHostPort(primary);
      await eventually(
        `${message} appended on ${primary}`,
        () =>
          valkeyCall(addr, "XADD", EVENTS_STREAM, "*", "m", message).then(() => true, () => false),
        30_000,
      );
      await eventually(`${message} handled`, () => handled.includes(message), 30_000, 10);
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
      await t.step("reading and claiming on the primary the Sentinels name", async () => {
        await connectedTo(SUBSCRIBER, group.primary.addr, 0);
        await connectedTo(COMMANDS, group.primary.addr, 0);
        await eventually("reading", () => reader.reading(), 10_000, 10);
        await delivered(group.primary.addr, "before");
        await claimsWork();
      });

      await t.step(
        "a manual failover (the old primary stays up): reading again on the new primary",
        async () => {
          const from = lines.length;
          const [host, port] = group.sentinels[0].split(":");
          assertEquals(
            await valkeyCall({ host, port: Number(port) }, "SENTINEL", "FAILOVER", group.master),
            "OK",
          );
          // The Sentinels disconnect the demoted primary's clients when they reconfigure it,
          // some seconds after the promotion; ours then ask them again.
          await connectedTo(SUBSCRIBER, group.replica.addr, from);
          await eventually("reading", () => reader.reading(), 30_000, 10);
          await delivered(group.replica.addr, "after manual failover");
          await connectedTo(COMMANDS, group.replica.addr, from);
          await claimsWork();
        },
      );

      await t.step(
        "the new primary dies: reading again on the old one once it is promoted",
        async () => {
          const from = lines.length;
          await group.replica.stop();
          await connectedTo(SUBSCRIBER, group.primary.addr, from);
          await eventually("reading", () => reader.reading(), 30_000, 10);
          assert(metrics.streamFailures.get() > 0, "the lost primary was noticed");
          await delivered(group.primary.addr, "after the primary died");
          await connectedTo(COMMANDS, group.primary.addr, from);
          await claimsWork();
        },
      );
      // Each event handled once, in the order appended.
      assertEquals(handled, ["before", "after manual failover", "after the primary died"]);
    } finally {
      stop.abort();
      await reader.stopped;
      readerClient.disconnect();
      commands.disconnect();
      await group.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
