/**
 * The worker's Valkey records for rollout feedback, on a real server: the
 * report script writes only into a record holding web's binding and
 * announces it; tracking state round-trips and bad state is dropped.
 */

import { Valkey } from "iovalkey";
import { assertEquals } from "../../../helpers/assert.ts";
import { withoutValkey } from "../../../helpers/skip.ts";
import { startValkey } from "../../../helpers/valkey.ts";
import {
  BINDING_FIELD,
  type ClusterReport,
  emptyCounts,
  reportField,
  statusChannel,
  statusKey,
} from "../../../../shared/event_status.ts";
import { createReportStore, createTrackingStore } from "../../../../worker/feedback/store.ts";
import type { TrackedEvent } from "../../../../worker/feedback/rollout_tracker.ts";

const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };
const report = (cluster: string): ClusterReport => ({
  cluster,
  state: "succeeded",
  matched: 0,
  counts: emptyCounts(),
  deployments: [],
  omitted: 0,
  updated: new Date().toISOString(),
});

Deno.test({
  name:
    "security: the report script writes only into a record with web's binding, and announces the id on the status channel",
  ...options,
  async fn() {
    const server = await startValkey();
    const client = new Valkey({ host: server.host, port: server.port });
    const listener = new Valkey({ host: server.host, port: server.port });
    try {
      const heard: string[] = [];
      await listener.subscribe(statusChannel("ch"));
      listener.on("message", (_c: string, m: string) => heard.push(m));
      const store = createReportStore(client, "ch");
      const id = crypto.randomUUID();
      assertEquals(await store.write(id, report("prod")), "no_record");
      assertEquals(await client.exists(statusKey(id)), 0, "no record was created");
      // A record someone else made without a binding is not written to either.
      await client.hset(statusKey(id), "cluster:other", "{}");
      assertEquals(await store.write(id, report("prod")), "no_record");
      await client.hset(statusKey(id), BINDING_FIELD, "{}");
      assertEquals(await store.write(id, report("prod")), "written");
      assertEquals(
        JSON.parse((await client.hget(statusKey(id), reportField("prod")))!).cluster,
        "prod",
      );
      for (let i = 0; i < 50 && heard.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assertEquals(heard, [id]);
    } finally {
      client.disconnect();
      listener.disconnect();
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "security: tracking state round-trips; state that does not parse or names another event is dropped and deleted",
  ...options,
  async fn() {
    const server = await startValkey();
    const client = new Valkey({ host: server.host, port: server.port });
    try {
      const store = createTrackingStore({ client, clusterName: "prod" });
      const event: TrackedEvent = {
        eventId: crypto.randomUUID(),
        matched: 2,
        deadline: Date.now() + 60_000,
        deployments: [
          {
            namespace: "ns",
            name: "api",
            result: "restarted",
            rollout: { state: "progressing", replicas: 2, updated: 1, ready: 1, available: 1 },
          },
          { namespace: "ns", name: "held", result: "skipped", reason: "paused" },
        ],
        targets: [{ namespace: "ns", name: "api", generation: 7, uid: "u" }],
      };
      await store.save(event);
      assertEquals(await store.load(), { events: [event], dropped: 0 });
      const forged = crypto.randomUUID();
      const index = "kuberollouttrigger:prod:tracking";
      await client.zadd(index, Date.now() + 60_000, forged);
      await client.set(`${index}:${forged}`, '{"eventId":"someone else","token":"secret"}');
      const loaded = await store.load();
      assertEquals([loaded.events.length, loaded.dropped], [1, 1]);
      assertEquals(await client.exists(`${index}:${forged}`), 0);
      await store.remove(event.eventId);
      assertEquals(await store.load(), { events: [], dropped: 0 });
    } finally {
      client.disconnect();
      await server.stop();
    }
  },
});
