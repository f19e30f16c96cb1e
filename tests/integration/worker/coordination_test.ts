/**
 * Restart claims against a real Valkey-compatible server: one claim per event
 * and Deployment, and a burst window per Deployment and image repository
 * (tags play no part), as RESTART_DEDUP_WINDOW's help says.
 */

import { assert, assertEquals, assertMatch } from "../../helpers/assert.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { eventually } from "../../helpers/eventually.ts";
import { connectValkey, startValkey } from "../../helpers/valkey.ts";
import { createLogger } from "../../../lib/log.ts";
import { settingsFor } from "../../../config/settings.ts";
import { createCoordinator } from "../../../worker/coordination.ts";
import { createStateSeal } from "../../../worker/sealed_state.ts";
import { generateKeyPair } from "../../helpers/signing_keys.ts";
import { parseSigningKey } from "../../../shared/event_keys.ts";
import { importSigningKey } from "../../../shared/signing_key.ts";

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
    const client = await connectValkey(valkey);
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
        await c.release(id(), "ns/d", REPO);
        assertEquals(await c.claim(id(), "ns/d", REPO), "recent", "only its holder releases it");
        await c.release(first, "ns/d", REPO);
        assertEquals(await c.claim(id(), "ns/d", REPO), "claimed", "released after a failure");
        // Every key carries the product's hash tag and the cluster's name, and expires.
        const keys = (await client.call("KEYS", "*")) as string[];
        assert(keys.length > 0 && keys.every((k) => k.startsWith("{kuberollouttrigger}:t1:")));
        for (const key of keys) assert(Number(await client.call("PTTL", key)) > 0, key);
      });
      await t.step(
        "the window tells a later event the restart it holds, sealed by this cluster only",
        async () => {
          const pair = await generateKeyPair();
          const key = await importSigningKey(parseSigningKey(pair.privatePem)!, "k");
          const seal = await createStateSeal(key);
          const c = createCoordinator({
            client,
            clusterName: "t3",
            windowMs: 60_000,
            logger,
            seal,
          });
          const first = id();
          const windowKey = "{kuberollouttrigger}:t3:recent:ns/d:" + REPO;
          const made = { eventId: first, generation: 4, restartedAt: 1_000, patchedAt: 2_000 };
          assertEquals(await c.claim(first, "ns/d", REPO), "claimed");
          assertEquals(await c.recentRestart("ns/d", REPO), { kind: "in_flight" });
          await c.restartMade("ns/d", REPO, { ...made, eventId: id() }); // not the window's event
          assertEquals(await c.recentRestart("ns/d", REPO), { kind: "in_flight" });
          await c.restartMade("ns/d", REPO, made);
          assertEquals(await c.recentRestart("ns/d", REPO), { kind: "made", ...made });
          const ttl = Number(await client.call("PTTL", windowKey));
          assert(ttl > 0 && ttl <= 60_000, "the window keeps its end");
          // security: a record written by anyone else is nothing to follow (the event restarts).
          await client.call(
            "SET",
            windowKey,
            JSON.stringify({ ...made, generation: 9 }),
            "KEEPTTL",
          );
          assertEquals(await c.recentRestart("ns/d", REPO), { kind: "gone" });
          await client.call("SET", windowKey, seal.seal("another key", JSON.stringify(made)));
          assertEquals(await c.recentRestart("ns/d", REPO), { kind: "gone" });
        },
      );
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
    const client = await connectValkey(valkey);
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
        const mine = replica();
        assertEquals(await mine.claimEvent(event), "claimed");
        const other = replica({ cluster: "c2" });
        assertEquals(await other.claimEvent(event), "claimed");
        await other.finishEvent(event);
        await mine.finishEvent(event);
      });

      await t.step(
        "a replica that stops renewing loses the event to another after its lease",
        async () => {
          const deadClient = await connectValkey(valkey, { name: "krt-test-dead-replica" });
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

      await t.step(
        "a live replica renews its lease: another waits past several leases, then answers busy (the event stays pending)",
        async () => {
          const event = crypto.randomUUID();
          const holder = replica({ leaseMs: 300 });
          assertEquals(await holder.claimEvent(event), "claimed");
          assertEquals(
            await replica({ leaseMs: 300, maxWaitMs: 1200 }).claimEvent(event),
            "busy",
          );
          await holder.finishEvent(event);
        },
      );

      await t.step(
        "a replica cut off past its lease does not renew the lease another replica took over",
        async () => {
          // Each replica on a link the test can cut: its commands fail as on a lost connection.
          const link = () => {
            const state = { cut: false };
            const fail = () => Promise.reject(new Error("Valkey is not connected"));
            return {
              state,
              coordinator: createCoordinator({
                client: {
                  call: (command, ...args) => state.cut ? fail() : client.call(command, ...args),
                  transaction: (commands) => state.cut ? fail() : client.transaction(commands),
                },
                clusterName: "c1",
                windowMs: 0,
                logger,
                leaseMs: 300,
                maxWaitMs: 1500,
              }),
            };
          };
          const [a, b, c] = [link(), link(), link()];
          const event = crypto.randomUUID();
          assertEquals(await a.coordinator.claimEvent(event), "claimed");
          a.state.cut = true;
          assertEquals(await b.coordinator.claimEvent(event), "claimed", "after a's lease");
          // a is back and keeps running its renewal; b dies. b's lease must lapse all the same.
          a.state.cut = false;
          b.state.cut = true;
          assertEquals(await c.coordinator.claimEvent(event), "claimed", "after b's lease");
          for (const r of [a, b, c]) r.state.cut = false;
          await c.coordinator.finishEvent(event);
          await a.coordinator.finishEvent(event);
          await b.coordinator.finishEvent(event);
        },
      );

      await t.step(
        "a replica gives up waiting after maxWaitMs (busy), and finds it done once it is",
        async () => {
          const event = crypto.randomUUID();
          const holder = replica();
          assertEquals(await holder.claimEvent(event), "claimed");
          assertEquals(await replica({ maxWaitMs: 200 }).claimEvent(event), "busy");
          await holder.finishEvent(event);
          assertEquals(await replica({ maxWaitMs: 200 }).claimEvent(event), "duplicate");
        },
      );

      await t.step(
        "without Valkey the event is handled without a claim, and the log says so",
        async () => {
          const offline = await connectValkey(valkey, { name: "krt-test-offline" });
          await valkey.stop();
          try {
            await eventually("the connection lost", () => !offline.connected, 5000, 10);
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
