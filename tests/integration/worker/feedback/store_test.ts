/**
 * The worker's Valkey records for rollout feedback, on a real server: the
 * report script writes only into a record holding web's binding and
 * announces it; tracking state round-trips and bad state is dropped.
 */

import { assert, assertEquals } from "../../../helpers/assert.ts";
import { withoutValkey } from "../../../helpers/skip.ts";
import { connectValkey, startValkey, subscribe } from "../../../helpers/valkey.ts";
import {
  BINDING_FIELD,
  type ClusterReport,
  emptyCounts,
  reportField,
  statusChannel,
  statusKey,
} from "../../../../shared/event_status.ts";
import { productKey } from "../../../../shared/valkey_keys.ts";
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
    const client = await connectValkey(server);
    const listener = await subscribe(server, statusChannel("ch"));
    try {
      const store = createReportStore(client, "ch");
      const id = crypto.randomUUID();
      assertEquals(await store.write(id, report("prod")), "no_record");
      assertEquals(await client.call("EXISTS", statusKey(id)), 0, "no record was created");
      // A record someone else made without a binding is not written to either.
      await client.call("HSET", statusKey(id), "cluster:other", "{}");
      assertEquals(await store.write(id, report("prod")), "no_record");
      assertEquals(await client.call("HGET", statusKey(id), reportField("prod")), null);
      await client.call("HSET", statusKey(id), BINDING_FIELD, "{}");
      assertEquals(await store.write(id, report("prod")), "written");
      const written = await client.call("HGET", statusKey(id), reportField("prod"));
      assertEquals(JSON.parse(String(written)).cluster, "prod");
      assertEquals(await listener.waitFor(1), [id]);
    } finally {
      client.disconnect();
      await listener.close();
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
    const client = await connectValkey(server);
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
      const index = productKey("prod", "tracking");
      assertEquals(index, "{kuberollouttrigger}:prod:tracking");
      // The state outlives its deadline by TRACKING_GRACE_MS, then Valkey drops it.
      const pttl = Number(await client.call("PTTL", `${index}:${event.eventId}`));
      assert(pttl > 110_000 && pttl <= 120_000, `PTTL ${pttl}`);
      await client.call("ZADD", index, Date.now() + 60_000, forged);
      await client.call(
        "SET",
        `${index}:${forged}`,
        '{"eventId":"someone else","token":"secret"}',
      );
      const loaded = await store.load();
      assertEquals(loaded, { events: [event], dropped: 1 });
      assertEquals(await client.call("EXISTS", `${index}:${forged}`), 0);
      assertEquals(await client.call("ZSCORE", index, forged), null);
      await store.remove(event.eventId);
      assertEquals(await store.load(), { events: [], dropped: 0 });
    } finally {
      client.disconnect();
      await server.stop();
    }
  },
});
