/**
 * Restart claims against a real Valkey-compatible server: one claim per event
 * and Deployment, and a burst window per Deployment and image repository
 * (tags play no part), as RESTART_DEDUP_WINDOW's help says.
 */

import { assertEquals, assertMatch } from "../../helpers/assert.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { eventually } from "../../helpers/eventually.ts";
import { startValkey } from "../../helpers/valkey.ts";
import { createLogger } from "../../../lib/log.ts";
import { parseHostPort } from "../../../lib/setting_values.ts";
import { settingsFor } from "../../../config/settings.ts";
import { createValkeyConnection } from "../../../worker/valkey.ts";
import { createCoordinator } from "../../../worker/coordination.ts";

const REPO = "ghcr.io/acme/app";

Deno.test("RESTART_DEDUP_WINDOW's help says the window is per repository, not per tag", () => {
  const help = settingsFor("worker").find(([, s]) => s.env === "RESTART_DEDUP_WINDOW")![1].help;
  assertMatch(help, /image repository/);
  assertMatch(help, /\(any tag\)/);
});

Deno.test({
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  name:
    "createCoordinator() claims once per event and Deployment, and windows per Deployment and repository",
  async fn(t) {
    const valkey = await startValkey();
    const logger = createLogger({ level: "error", write: () => {} });
    const client = createValkeyConnection({
      valkeyAddr: parseHostPort(valkey.addr),
      valkeyUsername: "",
      valkeyPassword: "",
      valkeyTls: false,
      valkeyTimeout: 2000,
    }, { name: "test", logger, offlineQueue: true });
    const id = () => crypto.randomUUID();
    try {
      await t.step("with a window", async () => {
        const c = createCoordinator({ client, clusterName: "t1", windowMs: 60_000, logger });
        const first = id();
        assertEquals(await c.claim(first, "ns/d", REPO), "claimed");
        assertEquals(await c.claim(first, "ns/d", REPO), "duplicate", "the other replica");
        // The next event for the repository (whatever tag it names) falls in the window.
        assertEquals(await c.claim(id(), "ns/d", REPO), "recent");
        assertEquals(await c.claim(id(), "ns/other", REPO), "claimed", "another Deployment");
        assertEquals(await c.claim(id(), "ns/d", "ghcr.io/acme/tool"), "claimed", "another repo");
        await c.release("ns/d", REPO);
        assertEquals(await c.claim(id(), "ns/d", REPO), "claimed", "released after a failure");
      });
      await t.step("without a window, each event claims", async () => {
        const c = createCoordinator({ client, clusterName: "t2", windowMs: 0, logger });
        assertEquals(await c.claim(id(), "ns/d", REPO), "claimed");
        assertEquals(await c.claim(id(), "ns/d", REPO), "claimed");
      });
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  name:
    "createCoordinator().claimEvent() lets one replica of a cluster handle an event, and another take over when it dies",
  async fn(t) {
    const valkey = await startValkey();
    const lines: string[] = [];
    const logger = createLogger({ level: "warn", write: (l) => lines.push(l) });
    const connect = (offlineQueue: boolean) =>
      createValkeyConnection({
        valkeyAddr: parseHostPort(valkey.addr),
        valkeyUsername: "",
        valkeyPassword: "",
        valkeyTls: false,
        valkeyTimeout: 1000,
      }, { name: "test", logger, offlineQueue });
    const client = connect(true);
    const replica = (options: { leaseMs?: number; maxWaitMs?: number; cluster?: string } = {}) =>
      createCoordinator({
        client,
        clusterName: options.cluster ?? "c1",
        windowMs: 0,
        logger,
        ...options,
      });
    try {
      await t.step(
        "the second replica waits for the first to finish, then leaves the event",
        async () => {
          const [a, b] = [replica(), replica()];
          const event = crypto.randomUUID();
          assertEquals(await a.claimEvent(event), "claimed");
          let answered: string | undefined;
          const waiting = b.claimEvent(event).then((r) => answered = r);
          await new Promise((r) => setTimeout(r, 300));
          assertEquals(answered, undefined, "b answered while a was still handling the event");
          await a.finishEvent(event);
          assertEquals(await waiting, "duplicate");
          assertEquals(await replica().claimEvent(event), "duplicate", "a later replica");
        },
      );

      await t.step("another cluster handles the same event on its own", async () => {
        const event = crypto.randomUUID();
        assertEquals(await replica().claimEvent(event), "claimed");
        const other = replica({ cluster: "c2" });
        assertEquals(await other.claimEvent(event), "claimed");
        await other.finishEvent(event);
      });

      await t.step(
        "a replica that stops renewing loses the event to another after its lease",
        async () => {
          const deadClient = connect(false);
          await eventually(
            "the connection",
            () => deadClient.status === "ready" || undefined,
            3000,
          );
          const dead = createCoordinator({
            client: deadClient,
            clusterName: "c1",
            windowMs: 0,
            logger,
            leaseMs: 300,
          });
          const event = crypto.randomUUID();
          assertEquals(await dead.claimEvent(event), "claimed");
          deadClient.disconnect(); // it dies: its lease is no longer renewed
          const heir = replica({ leaseMs: 300 });
          assertEquals(await heir.claimEvent(event), "claimed");
          await heir.finishEvent(event);
          await dead.finishEvent(event); // stops its (failing) renewal timer
        },
      );

      await t.step("a replica gives up waiting after maxWaitMs and leaves the event", async () => {
        const event = crypto.randomUUID();
        const holder = replica();
        assertEquals(await holder.claimEvent(event), "claimed");
        assertEquals(await replica({ maxWaitMs: 200 }).claimEvent(event), "duplicate");
        await holder.finishEvent(event);
      });

      await t.step(
        "without Valkey the event is handled without a claim, and the log says so",
        async () => {
          const offline = connect(false);
          await valkey.stop();
          try {
            const c = createCoordinator({
              client: offline,
              clusterName: "c1",
              windowMs: 0,
              logger,
            });
            assertEquals(await c.claimEvent(crypto.randomUUID()), "unavailable");
            assertEquals(await c.claim(crypto.randomUUID(), "ns/d", REPO), "unavailable");
            assertMatch(
              lines.join("\n"),
              /event claim failed; handling the event without coordination/,
            );
            assertMatch(lines.join("\n"), /restart claim failed; restarting without coordination/);
          } finally {
            offline.disconnect();
          }
        },
      );
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});
