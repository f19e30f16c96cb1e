/**
 * A rolling upgrade from the version that delivered over PubSub, with the
 * real programs: web publishes every event on the channel as before (what
 * the previous worker reads) and appends it to the stream (what this one
 * reads); the per-event claim both versions take,
 * `{kuberollouttrigger}:<CLUSTER_NAME>:handling:<event id>`, is the contract
 * that makes a cluster handle an event once between a previous-version
 * replica and a new one. The previous replica is played by this test, with
 * the claim exactly as that version takes it (SET NX with a 5 s lease, then
 * "done" for a day): done first, held, and held by a replica that died.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { appendEvent, connectValkey, startValkey, subscribe } from "../helpers/valkey.ts";
import { EVENTS_STREAM } from "../../shared/event_stream.ts";
import { productKey } from "../../shared/valkey_keys.ts";
import { DEV_DEFAULTS } from "../../tools/dev.ts";
import { mintDevToken } from "../../tools/trigger.ts";

const info = withoutValkey() ? undefined : requireControlPlane("the upgrade tests");

Deno.test({
  name:
    "upgrade: web still publishes on the channel, and a previous-version replica and a new one handle each event once between them through the shared claim",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    const programs: Program[] = [];
    const commands = await connectValkey(valkey);
    const channel = await subscribe(valkey, DEV_DEFAULTS.VALKEY_CHANNEL);
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-upgrade");
      await cluster.createDeployment(
        deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      const base = { ...DEV_DEFAULTS, VALKEY_ADDR: valkey.addr };
      const web = await startWeb(base, ["--dev-mode"]);
      programs.push(web.program);
      const worker = await startWorker(
        {
          ...base,
          CLUSTER_NAME: "mixed",
          WATCH_NAMESPACES: ns,
          RESTART_DEDUP_WINDOW: "0s",
          // The replica that leaves an event to another says so at debug.
          LOG_LEVEL: "debug",
        },
        kubeconfig,
      );
      programs.push(worker.program);
      const handling = (id: string) => productKey("mixed", "handling", id);
      const post = async () => {
        const res = await fetch(`${web.url}/event`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${await mintDevToken(web.url)}`,
            "content-type": "application/json",
          },
          body: '{"image":"ghcr.io/acme/app:dev"}',
        });
        assertEquals(res.status, 202);
        return (await res.json()).id as string;
      };
      const generation = async () => (await cluster.getDeployment(ns, "app")).metadata.generation;

      await t.step(
        "the channel still carries every event, as the previous worker reads it",
        async () => {
          const id = await post();
          const message = await eventually(
            "the channel message",
            () => channel.messages.find((m) => m.includes(id)),
          );
          assertEquals(JSON.parse(message).id, id);
          await worker.program.waitForLog((l) => l.msg === "event handled" && l.event_id === id);
        },
      );

      const message = (id: string) =>
        JSON.stringify({
          id,
          time: new Date().toISOString(),
          image: "ghcr.io/acme/app",
          tags: ["dev"],
        });
      const leftToOther = (id: string) =>
        worker.program.waitForLog((l) =>
          l.msg === "event handled by another replica of this cluster" && l.event_id === id
        );

      await t.step(
        "an event the previous replica handled (claim done) is only acknowledged",
        async () => {
          const before = await generation();
          const id = crypto.randomUUID();
          // The previous replica got the channel copy first: claimed, restarted, marked done.
          await commands.call("SET", handling(id), "done", "EX", 86_400);
          await appendEvent(valkey, message(id));
          assertEquals((await leftToOther(id)).level, "debug");
          assert(!worker.program.logs.some((l) => l.msg === "event handled" && l.event_id === id));
          assertEquals(await generation(), before, "the new replica restarted nothing");
          assertEquals(await pending(commands), 0, "acknowledged");
        },
      );

      await t.step(
        "while the previous replica holds the claim, the new one waits and leaves it to it",
        async () => {
          const before = await generation();
          const id = crypto.randomUUID();
          await commands.call("SET", handling(id), "previous-replica", "PX", 5000, "NX");
          await appendEvent(valkey, message(id));
          await new Promise((r) => setTimeout(r, 1500));
          assert(
            !worker.program.logs.some((l) =>
              l.event_id === id && l.msg.startsWith("event handled")
            ),
          );
          await commands.call("SET", handling(id), "done", "EX", 86_400);
          await leftToOther(id);
          assertEquals(await generation(), before);
        },
      );

      await t.step(
        "a previous replica that died holding the claim: the new one takes the event over",
        async () => {
          const before = await generation();
          const id = crypto.randomUUID();
          await commands.call("SET", handling(id), "previous-replica", "PX", 2000, "NX");
          await appendEvent(valkey, message(id));
          const handled = await worker.program.waitForLog(
            (l) => l.msg === "event handled" && l.event_id === id,
            20_000,
          );
          assertEquals(handled.restarted, [`${ns}/app`]);
          assertEquals(await generation(), before + 1);
        },
      );
    } finally {
      await channel.close();
      commands.disconnect();
      for (const p of programs) await p.stop();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});

/** Entries delivered to the cluster's group and not yet acknowledged. */
async function pending(commands: Awaited<ReturnType<typeof connectValkey>>): Promise<number> {
  return Number((await commands.call("XPENDING", EVENTS_STREAM, "mixed") as unknown[])[0]);
}
