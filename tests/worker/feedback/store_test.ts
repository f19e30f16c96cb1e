/**
 * The worker's feedback records on the in-memory Valkey, its expiry on a clock
 * the test moves: a cluster report is written only into a status record that
 * holds web's binding and is then announced on the status channel; tracking
 * state is saved, removed and loaded back with its expiry, bounded, and state
 * that is malformed or not ours is dropped and deleted without being quoted.
 * The report script is registered here with the semantics of its Lua; the
 * script itself runs against a real server in
 * tests/integration/worker/feedback/store_test.ts.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { generateKeyPair } from "../../helpers/signing_keys.ts";
import { parseSigningKey } from "../../../shared/event_keys.ts";
import { importSigningKey } from "../../../shared/signing_key.ts";
import { createStateSeal } from "../../../worker/sealed_state.ts";
import { MemoryValkey } from "../../helpers/memory_valkey.ts";
import {
  BINDING_FIELD,
  type ClusterReport,
  emptyCounts,
  MAX_REPORTED_DEPLOYMENTS,
  parseClusterReport,
  reportField,
  statusKey,
} from "../../../shared/event_status.ts";
import {
  createReportStore,
  createTrackingStore,
  TRACKING_GRACE_MS,
} from "../../../worker/feedback/store.ts";
import type { TrackedEvent } from "../../../worker/feedback/rollout_tracker.ts";

const START = Date.UTC(2026, 11, 6, 12);
const INDEX = "{kuberollouttrigger}:prod:tracking";
const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;

function world() {
  let now = START;
  const valkey = new MemoryValkey({ now: () => now })
    // The report script: HSET and PUBLISH only when the record holds web's binding.
    .script("HEXISTS", (v, [key], [binding, field, value, channel, message]) => {
      if (v.run(["HEXISTS", key, binding]) === 0) return 0;
      v.run(["HSET", key, field, value]);
      v.run(["PUBLISH", channel, message]);
      return 1;
    });
  const tracking = createTrackingStore({ client: valkey, clusterName: "prod", now: () => now });
  return { valkey, tracking, advance: (ms: number) => now += ms, now: () => now };
}

const report = (cluster: string): ClusterReport => ({
  cluster,
  state: "succeeded",
  matched: 1,
  counts: { ...emptyCounts(), restarted: 1, complete: 1 },
  deployments: [{
    namespace: "ns",
    name: "api",
    result: "restarted",
    rollout: { state: "complete", replicas: 2, updated: 2, ready: 2, available: 2 },
  }],
  omitted: 0,
  updated: new Date(START).toISOString(),
});

function tracked(deadline: number, eventId: string = crypto.randomUUID()): TrackedEvent {
  return {
    eventId,
    matched: 2,
    deadline,
    deployments: [
      {
        namespace: "ns",
        name: "api",
        result: "restarted",
        rollout: { state: "progressing", replicas: 2, updated: 1, ready: 1, available: 1 },
      },
      { namespace: "ns", name: "held", result: "skipped", reason: "paused" },
    ],
    targets: [{ namespace: "ns", name: "api", generation: 7, uid: "u1" }],
  };
}

Deno.test("security: createReportStore() writes the report only into a record holding web's binding, then announces it", async (t) => {
  const { valkey } = world();
  const store = createReportStore(valkey, "krt-events");
  const id = crypto.randomUUID();
  const key = statusKey(id);
  assertEquals(key, `{kuberollouttrigger}:event-status:${id}`);

  await t.step("no record: none is created, nothing is announced", async () => {
    assertEquals(await store.write(id, report("prod")), "no_record");
    assertEquals(valkey.keys(), []);
    assertEquals(valkey.published, []);
  });
  await t.step("a record someone made without the binding is not written to", async () => {
    valkey.run(["HSET", key, "cluster:other", "{}"]);
    assertEquals(await store.write(id, report("prod")), "no_record");
    assertEquals(valkey.hash(key), { "cluster:other": "{}" });
    assertEquals(valkey.published, []);
  });
  await t.step(
    "web's record: the report in the cluster's field, the id on the status channel",
    async () => {
      valkey.run(["HSET", key, BINDING_FIELD, "{}"]);
      assertEquals(await store.write(id, report("prod")), "written");
      assertEquals(parseClusterReport(valkey.hash(key)[reportField("prod")]), report("prod"));
      assertEquals(valkey.published, [{ channel: "krt-events:status", message: id }]);
      // Another cluster's report goes beside it, not over it.
      assertEquals(await store.write(id, report("staging")), "written");
      assertEquals(Object.keys(valkey.hash(key)).sort(), [
        BINDING_FIELD,
        "cluster:other",
        "cluster:prod",
        "cluster:staging",
      ]);
    },
  );
});

Deno.test("createTrackingStore() saves, loads back and removes what a cluster follows, under its own keys", async () => {
  const w = world();
  const event = tracked(START + 10_000);
  await w.tracking.save(event);
  assertEquals(w.valkey.keys().sort(), [INDEX, `${INDEX}:${event.eventId}`]);
  assertEquals(w.valkey.zset(INDEX), [[event.eventId, event.deadline]]);
  assertEquals(await w.tracking.load(), { events: [event], dropped: 0 });
  // Saved again as it progresses: one entry still.
  const progressed = structuredClone(event);
  progressed.deployments[0].rollout!.updated = 2;
  await w.tracking.save(progressed);
  assertEquals(await w.tracking.load(), { events: [progressed], dropped: 0 });
  // A rollout baking: its bake's start comes back, so a resumed worker bakes on from there.
  const baking = structuredClone(progressed);
  baking.targets[0].bake = { since: START + 5_000, generation: baking.targets[0].generation };
  await w.tracking.save(baking);
  assertEquals(await w.tracking.load(), { events: [baking], dropped: 0 });
  // Another cluster's tracking is not ours to resume.
  const other = createTrackingStore({ client: w.valkey, clusterName: "staging", now: w.now });
  assertEquals(await other.load(), { events: [], dropped: 0 });
  await w.tracking.remove(event.eventId);
  assertEquals(await w.tracking.load(), { events: [], dropped: 0 });
  assertEquals(w.valkey.get(`${INDEX}:${event.eventId}`), undefined);
  assertEquals(w.valkey.zset(INDEX), []);
});

Deno.test("createTrackingStore() keeps a report's named Deployments and the rest of the followed ones by name", async () => {
  const w = world();
  const names = Array.from({ length: MAX_REPORTED_DEPLOYMENTS + 10 }, (_, i) => `app-${i}`);
  const event: TrackedEvent = {
    ...tracked(START + 10_000),
    matched: names.length,
    deployments: names.map((name) => ({
      namespace: "ns",
      name,
      result: "restarted",
      rollout: { state: "progressing", replicas: 1, updated: 0, ready: 0, available: 0 },
    })),
    targets: names.map((name, i) => ({ namespace: "ns", name, generation: i + 1, uid: `u${i}` })),
  };
  await w.tracking.save(event);
  const [loaded] = (await w.tracking.load()).events;
  assertEquals(loaded.targets, event.targets);
  assertEquals(
    loaded.deployments.slice(0, MAX_REPORTED_DEPLOYMENTS),
    event.deployments.slice(0, 50),
  );
  assertEquals(
    loaded.deployments.slice(MAX_REPORTED_DEPLOYMENTS),
    names.slice(MAX_REPORTED_DEPLOYMENTS).map((name) => ({
      namespace: "ns",
      name,
      result: "restarted",
    })),
  );
});

Deno.test("createTrackingStore() state lives until TRACKING_GRACE_MS after its deadline, and no longer", async (t) => {
  await t.step(
    "resumed after the deadline within the grace, so the report can say timed_out",
    async () => {
      const w = world();
      const event = tracked(START + 10_000);
      await w.tracking.save(event);
      assertEquals(w.valkey.ttl(`${INDEX}:${event.eventId}`), 10_000 + TRACKING_GRACE_MS);
      w.advance(10_000 + TRACKING_GRACE_MS - 1);
      assertEquals(await w.tracking.load(), { events: [event], dropped: 0 });
    },
  );
  await t.step("gone once the grace has passed: not resumed, not counted as dropped", async () => {
    const w = world();
    await w.tracking.save(tracked(START + 10_000));
    w.advance(10_000 + TRACKING_GRACE_MS + 1);
    assertEquals(await w.tracking.load(), { events: [], dropped: 0 });
    assertEquals(w.valkey.keys().filter((k) => k !== INDEX), []);
    // The next save prunes the index of what has expired.
    const later = tracked(w.now() + 10_000);
    await w.tracking.save(later);
    assertEquals(w.valkey.zset(INDEX), [[later.eventId, later.deadline]]);
  });
  await t.step("a long rollout is resumed for as long as it is followed", async () => {
    const w = world();
    const event = tracked(START + 3_600_000);
    await w.tracking.save(event);
    w.advance(3_000_000);
    assertEquals(await w.tracking.load(), { events: [event], dropped: 0 });
  });
});

Deno.test("security: createTrackingStore().load() drops and deletes state that is malformed or not this event's, and never quotes it", async (t) => {
  const good = tracked(START + 10_000);
  const valid = (): Record<string, unknown> => ({
    eventId: "",
    matched: 1,
    deadline: START + 10_000,
    targets: [{ namespace: "ns", name: "api", generation: 1 }],
    report: JSON.stringify({ ...report("resume"), state: "in_progress" }),
    rest: [],
  });
  const cases: [string, (id: string) => string][] = [
    ["not JSON", () => `{"token":"${SECRET}"`],
    ["JSON null", () => "null"],
    [
      "another event's state",
      () => JSON.stringify({ ...valid(), eventId: crypto.randomUUID(), token: SECRET }),
    ],
    [
      "a negative matched count",
      (id) => JSON.stringify({ ...valid(), eventId: id, matched: -1, token: SECRET }),
    ],
    [
      "no deadline",
      (id) => JSON.stringify({ ...valid(), eventId: id, deadline: "soon", token: SECRET }),
    ],
    [
      "an invalid target",
      (id) => JSON.stringify({ ...valid(), eventId: id, targets: [{ name: SECRET }] }),
    ],
    [
      "more targets than a report can follow",
      (id) =>
        JSON.stringify({
          ...valid(),
          eventId: id,
          targets: Array.from(
            { length: 10_001 },
            () => ({ namespace: "n", name: "a", generation: 1 }),
          ),
        }),
    ],
    [
      "a report web would not accept",
      (id) => JSON.stringify({ ...valid(), eventId: id, report: `{"cluster":"${SECRET}"}` }),
    ],
    [
      "an invalid unnamed entry",
      (id) => JSON.stringify({ ...valid(), eventId: id, rest: [SECRET] }),
    ],
  ];
  for (const [name, state] of cases) {
    await t.step(name, async () => {
      const w = world();
      await w.tracking.save(good);
      const id = crypto.randomUUID();
      w.valkey.run(["ZADD", INDEX, String(START + 10_000), id]);
      w.valkey.run(["SET", `${INDEX}:${id}`, state(id)]);
      const loaded = await w.tracking.load();
      assertEquals(loaded, { events: [good], dropped: 1 });
      assert(!JSON.stringify(loaded).includes(SECRET), "the stored state was quoted");
      assertEquals(w.valkey.get(`${INDEX}:${id}`), undefined, "the bad state was kept");
      assertEquals(w.valkey.zset(INDEX).map(([member]) => member), [good.eventId]);
      assertEquals(await w.tracking.load(), { events: [good], dropped: 0 }, "dropped once");
    });
  }
  await t.step(
    "more than 4 MB: dropped from the index unparsed, and not looked at again",
    async () => {
      const w = world();
      const id = crypto.randomUUID();
      // Valid in every other way: only its size gets it dropped.
      const huge = JSON.stringify({
        ...valid(),
        eventId: id,
        targets: Array.from({ length: 9000 }, (_, i) => ({
          namespace: "ns",
          name: `${"a".repeat(480)}${i}`,
          generation: 1,
        })),
      });
      assert(huge.length > 4_000_000);
      w.valkey.run(["ZADD", INDEX, String(START + 10_000), id]);
      w.valkey.run(["SET", `${INDEX}:${id}`, huge]);
      assertEquals(await w.tracking.load(), { events: [], dropped: 1 });
      assertEquals(w.valkey.zset(INDEX), []);
      assertEquals(await w.tracking.load(), { events: [], dropped: 0 });
    },
  );
  await t.step(
    "an index entry that is not an event id: dropped without reading any key for it",
    async () => {
      const w = world();
      const forged = `../x:${SECRET}`;
      w.valkey.run(["ZADD", INDEX, String(START + 10_000), forged]);
      w.valkey.run(["SET", `${INDEX}:${forged}`, JSON.stringify(valid())]);
      assertEquals(await w.tracking.load(), { events: [], dropped: 1 });
      assert(!w.valkey.calls.some((c) => c[0] === "GET"), "read a key named by a forged entry");
      assertEquals(w.valkey.zset(INDEX), []);
    },
  );
  await t.step("an index entry whose state has gone: dropped from the index", async () => {
    const w = world();
    w.valkey.run(["ZADD", INDEX, String(START + 10_000), crypto.randomUUID()]);
    assertEquals(await w.tracking.load(), { events: [], dropped: 1 });
    assertEquals(w.valkey.zset(INDEX), []);
  });
});

Deno.test("createTrackingStore().load() resumes at most 1000 events, the earliest deadlines first", async () => {
  const w = world();
  const events = Array.from({ length: 1001 }, (_, i) => tracked(START + 10_000 + i));
  for (const event of [...events].reverse()) await w.tracking.save(event);
  const loaded = await w.tracking.load();
  assertEquals(loaded.dropped, 0);
  assertEquals(loaded.events.length, 1000);
  assertEquals(loaded.events.map((e) => e.eventId), events.slice(0, 1000).map((e) => e.eventId));
  // The one left out is not deleted: a later start finds it.
  assertEquals(w.valkey.zset(INDEX).length, 1001);
});

Deno.test("createTrackingStore() fails, rather than pretends, while Valkey is away", async () => {
  const w = world();
  w.valkey.down = true;
  const failed = async (p: Promise<unknown>) =>
    (await p.then(() => undefined, (e) => e)) instanceof Error;
  assert(await failed(w.tracking.save(tracked(START + 10_000))));
  assert(await failed(w.tracking.remove(crypto.randomUUID())));
  assert(await failed(w.tracking.load()));
  assert(
    await failed(createReportStore(w.valkey, "ch").write(crypto.randomUUID(), report("prod"))),
  );
});

Deno.test("security: with the cluster's seal, tracking state it did not seal is dropped, never resumed", async () => {
  const [mine, theirs] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const sealOf = async (pem: string) =>
    await createStateSeal(await importSigningKey(parseSigningKey(pem)!, "k"));
  const w = world();
  const sealed = createTrackingStore({
    client: w.valkey,
    clusterName: "prod",
    now: w.now,
    seal: await sealOf(mine.privatePem),
  });
  const event = tracked(START + 10_000);
  await sealed.save(event);
  assertEquals(await sealed.load(), { events: [event], dropped: 0 });
  // Written without the seal (anyone with Valkey access), or sealed by another cluster's key.
  const forged = [
    w.tracking,
    createTrackingStore({
      client: w.valkey,
      clusterName: "prod",
      now: w.now,
      seal: await sealOf(theirs.privatePem),
    }),
  ];
  for (const store of forged) {
    await store.save(event);
    assertEquals(await sealed.load(), { events: [], dropped: 1 });
    // Left alone (a replica with the previous key may follow it): it expires with its deadline.
    assert(w.valkey.get(`${INDEX}:${event.eventId}`) !== undefined, "not deleted");
  }
});
