/**
 * createCoordinator() on the in-memory Valkey, its expiry on a clock the test
 * moves: one replica of a cluster handles each event (the others wait for it,
 * or take over once its lease lapses), each restart is claimed once, a burst
 * window restarts a Deployment once per repository, and without Valkey
 * everything goes ahead uncoordinated, because a missed restart is worse than
 * a doubled one. The lease renewal script is registered here with the
 * semantics of its Lua; the script itself runs against a real server in
 * tests/integration/worker/coordination_test.ts.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { MemoryValkey } from "../helpers/memory_valkey.ts";
import { createLogger, type LogFields } from "../../lib/log.ts";
import type { ValkeyCommands } from "../../shared/valkey_client.ts";
import { type Coordinator, createCoordinator, readRecent } from "../../worker/coordination.ts";

const REPO = "ghcr.io/acme/app";
const LEASE_MS = 400;

/** Real time passing, for the coordinator's own timers (renewal, polling). */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function world() {
  let now = 1_000_000;
  const valkey = new MemoryValkey({ now: () => now })
    // The renewal script: PEXPIRE only while the key still holds the caller's token.
    .script(
      "PEXPIRE",
      (v, [key], [owner, ms]) => v.get(key) === owner ? v.run(["PEXPIRE", key, ms]) : 0,
    )
    // Giving a window up: DEL only while it is still the caller's event's.
    .script("'DEL'", (v, [key], [eventId]) => v.get(key) === eventId ? v.run(["DEL", key]) : 0);
  const lines: (LogFields & { msg: string; level: string })[] = [];
  const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
  const coordinators: Coordinator[] = [];
  const events: string[] = [];
  /** One worker replica on its own link to Valkey, which the test can cut. */
  const replica = (options: { cluster?: string; windowMs?: number; maxWaitMs?: number } = {}) => {
    const link = { cut: false };
    const fail = () => Promise.reject(new Error("Valkey is not connected"));
    const client: ValkeyCommands = {
      call: (command, ...args) => link.cut ? fail() : valkey.call(command, ...args),
      transaction: (commands) => link.cut ? fail() : valkey.transaction(commands),
    };
    const coordinator = createCoordinator({
      client,
      clusterName: options.cluster ?? "prod",
      windowMs: options.windowMs ?? 0,
      logger,
      leaseMs: LEASE_MS,
      maxWaitMs: options.maxWaitMs ?? 5000,
      claimTtlSeconds: 3600,
    });
    coordinators.push(coordinator);
    return { coordinator, link };
  };
  return {
    valkey,
    lines,
    replica,
    advance: (ms: number) => now += ms,
    newEvent: () => {
      const id = crypto.randomUUID();
      events.push(id);
      return id;
    },
    /** Stops every renewal timer the test started. */
    async finish() {
      for (const c of coordinators) for (const id of events) await c.finishEvent(id);
    },
  };
}

/**
 * Lets `leases` leases pass on Valkey's clock, a quarter of a lease at a time,
 * each step after enough real time for a renewal (every max(100 ms, lease / 3)).
 */
async function passLeases(w: { advance(ms: number): void }, leases: number): Promise<void> {
  for (let i = 0; i < leases * 4; i++) {
    await sleep(150);
    w.advance(LEASE_MS / 4);
  }
}

/** Resolves with the claim's answer, or "waiting" if it has none after `ms` of real time. */
async function answerWithin<T>(claim: Promise<T>, ms: number): Promise<T | "waiting"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const answer = await Promise.race([
    claim,
    new Promise<"waiting">((r) => timer = setTimeout(() => r("waiting"), ms)),
  ]);
  clearTimeout(timer);
  return answer;
}

Deno.test("claimEvent(): the first replica claims; another waits until it finishes, then leaves the event to it", async () => {
  const w = world();
  try {
    const [a, b] = [w.replica().coordinator, w.replica().coordinator];
    const event = w.newEvent();
    assertEquals(await a.claimEvent(event), "claimed");
    const waiting = b.claimEvent(event);
    assertEquals(await answerWithin(waiting, 300), "waiting", "b answered while a was handling");
    await a.finishEvent(event);
    assertEquals(await answerWithin(waiting, 1000), "duplicate", "not told at once");
    // A finished event costs Valkey nothing more: its lease is no longer renewed.
    const renewals = () => w.valkey.calls.filter((c) => c[0] === "EVAL").length;
    const before = renewals();
    await sleep(300);
    assertEquals(renewals(), before, "still renewing a finished event");
    assertEquals(await w.replica().coordinator.claimEvent(event), "duplicate", "a later replica");
    // The handled mark outlives leases by far: it is kept for the claim TTL.
    const key = `{kuberollouttrigger}:prod:handling:${event}`;
    assertEquals(w.valkey.ttl(key), 3600 * 1000);
    w.advance(3600 * 1000);
    assertEquals(w.valkey.get(key), undefined, "the mark expires with the claim TTL");
  } finally {
    await w.finish();
  }
});

Deno.test("claimEvent(): each cluster handles the same event once, on its own", async () => {
  const w = world();
  try {
    const event = w.newEvent();
    assertEquals(await w.replica({ cluster: "prod" }).coordinator.claimEvent(event), "claimed");
    assertEquals(await w.replica({ cluster: "staging" }).coordinator.claimEvent(event), "claimed");
    // Every key carries the product's hash tag (one cluster slot) and its cluster's name.
    assertEquals(w.valkey.keys().sort(), [
      `{kuberollouttrigger}:prod:handling:${event}`,
      `{kuberollouttrigger}:staging:handling:${event}`,
    ]);
  } finally {
    await w.finish();
  }
});

Deno.test("claimEvent(): a live replica renews its lease, so the event stays its own past many leases", async () => {
  const w = world();
  try {
    const holder = w.replica().coordinator;
    const event = w.newEvent();
    assertEquals(await holder.claimEvent(event), "claimed");
    const other = w.replica().coordinator.claimEvent(event);
    await passLeases(w, 3);
    assertEquals(await answerWithin(other, 10), "waiting", "the other took over a live lease");
    await holder.finishEvent(event);
    assertEquals(await answerWithin(other, 1000), "duplicate");
  } finally {
    await w.finish();
  }
});

Deno.test("claimEvent(): a replica that dies loses the event to the one waiting, once its lease lapses", async () => {
  const w = world();
  try {
    const dead = w.replica();
    const heir = w.replica().coordinator;
    const event = w.newEvent();
    assertEquals(await dead.coordinator.claimEvent(event), "claimed");
    const waiting = heir.claimEvent(event);
    assertEquals(await answerWithin(waiting, 150), "waiting");
    dead.link.cut = true; // it dies: its renewals no longer reach Valkey
    await sleep(250);
    assertEquals(await answerWithin(waiting, 10), "waiting", "taken over before the lease lapsed");
    w.advance(LEASE_MS);
    assertEquals(await answerWithin(waiting, 1000), "claimed");
    assertEquals(w.valkey.ttl(`{kuberollouttrigger}:prod:handling:${event}`), LEASE_MS);
  } finally {
    await w.finish();
  }
});

Deno.test("claimEvent(): a replica back after its lease lapsed renews only its own lease, never the one taken over", async () => {
  const w = world();
  try {
    const [a, b] = [w.replica(), w.replica()];
    const event = w.newEvent();
    assertEquals(await a.coordinator.claimEvent(event), "claimed");
    a.link.cut = true;
    w.advance(LEASE_MS);
    assertEquals(await b.coordinator.claimEvent(event), "claimed", "after a's lease lapsed");
    // a is back and its renewal timer keeps running; b dies.
    a.link.cut = false;
    b.link.cut = true;
    const c = w.replica().coordinator.claimEvent(event);
    await passLeases(w, 2);
    assertEquals(await answerWithin(c, 10), "claimed", "b's lapsed lease was kept alive by a");
  } finally {
    await w.finish();
  }
});

Deno.test("claimEvent(): a replica waits at most maxWaitMs for another still working, then answers busy (not done: the event stays pending)", async () => {
  const w = world();
  try {
    const event = w.newEvent();
    const holder = w.replica().coordinator;
    assertEquals(await holder.claimEvent(event), "claimed");
    const waiting = w.replica({ maxWaitMs: 200 }).coordinator;
    assertEquals(await answerWithin(waiting.claimEvent(event), 2000), "busy");
    assertEquals(await waiting.handled(event), false);
    await holder.finishEvent(event);
    assertEquals(await waiting.handled(event), true);
    assertEquals(await answerWithin(waiting.claimEvent(event), 2000), "duplicate");
  } finally {
    await w.finish();
  }
});

Deno.test("claim(): one restart per event and Deployment, and one per burst window per Deployment and repository", async (t) => {
  await t.step("with a window", async () => {
    const w = world();
    const c = w.replica({ windowMs: 60_000 }).coordinator;
    const first = w.newEvent();
    assertEquals(await c.claim(first, "ns/d", REPO), "claimed");
    assertEquals(await c.claim(first, "ns/d", REPO), "duplicate", "the same event again");
    assertEquals(await c.claim(w.newEvent(), "ns/d", REPO), "recent", "another tag, same repo");
    assertEquals(await c.claim(w.newEvent(), "ns/other", REPO), "claimed", "another Deployment");
    assertEquals(await c.claim(w.newEvent(), "ns/d", `${REPO}-tool`), "claimed", "another repo");
    w.advance(60_000);
    const holder = w.newEvent();
    assertEquals(await c.claim(holder, "ns/d", REPO), "claimed", "after the window");
    assertEquals(await c.claim(w.newEvent(), "ns/d", REPO), "recent");
    await c.release(first, "ns/d", REPO);
    assertEquals(
      await c.claim(w.newEvent(), "ns/d", REPO),
      "recent",
      "only its holder releases it",
    );
    await c.release(holder, "ns/d", REPO);
    assertEquals(await c.claim(w.newEvent(), "ns/d", REPO), "claimed", "released after a failure");
    assertEquals(await c.claim(first, "ns/d", REPO), "duplicate", "release keeps event claims");
    // Every key is the cluster's, and every one expires.
    for (const key of w.valkey.keys()) {
      assert(key.startsWith("{kuberollouttrigger}:prod:"), key);
      assert((w.valkey.ttl(key) ?? 0) > 0, `${key} never expires`);
    }
  });
  await t.step("without a window, each event restarts", async () => {
    const w = world();
    const c = w.replica({ windowMs: 0 }).coordinator;
    assertEquals(await c.claim(w.newEvent(), "ns/d", REPO), "claimed");
    const event = w.newEvent();
    assertEquals(await c.claim(event, "ns/d", REPO), "claimed");
    await c.release(event, "ns/d", REPO);
    assert(w.valkey.keys().every((k) => !k.includes(":recent:")), "a window key without a window");
  });
  await t.step("the other cluster's claims do not count", async () => {
    const w = world();
    const event = w.newEvent();
    const prod = w.replica({ cluster: "prod", windowMs: 60_000 }).coordinator;
    const staging = w.replica({ cluster: "staging", windowMs: 60_000 }).coordinator;
    assertEquals(await prod.claim(event, "ns/d", REPO), "claimed");
    assertEquals(await staging.claim(event, "ns/d", REPO), "claimed");
  });
});

Deno.test("without Valkey every claim is unavailable and the event is handled all the same, with a warning", async () => {
  const w = world();
  try {
    const c = w.replica({ windowMs: 60_000 }).coordinator;
    w.valkey.down = true;
    const event = w.newEvent();
    assertEquals(await c.claimEvent(event), "unavailable");
    assertEquals(await c.claim(event, "ns/d", REPO), "unavailable");
    // Neither finishing nor releasing throws while Valkey is away.
    await c.finishEvent(event);
    await c.release(event, "ns/d", REPO);
    const warned = w.lines.filter((l) => l.level === "warn");
    assertEquals(warned.map((l) => [l.msg, l.event_id ?? l.deployment, l.error]), [
      [
        "event claim failed; handling the event without coordination",
        event,
        "Valkey is not connected",
      ],
      ["restart claim failed; restarting without coordination", "ns/d", "Valkey is not connected"],
    ]);
  } finally {
    await w.finish();
  }
});

Deno.test("claimEvent(): Valkey lost while waiting for another replica: the event is handled here", async () => {
  const w = world();
  try {
    const event = w.newEvent();
    assertEquals(await w.replica().coordinator.claimEvent(event), "claimed");
    const waiting = w.replica().coordinator.claimEvent(event);
    assertEquals(await answerWithin(waiting, 150), "waiting");
    w.valkey.down = true;
    assertEquals(await answerWithin(waiting, 1000), "unavailable");
  } finally {
    w.valkey.down = false;
    await w.finish();
  }
});

Deno.test("readRecent() reads a window's opened value: missing, claimed, made; anything else is a restart in flight", () => {
  const id = "0d1e2f30-4a5b-4c6d-8e7f-8091a2b3c4d5";
  const made = { eventId: id, generation: 12, restartedAt: 1_000, patchedAt: 2_000 };
  assertEquals(readRecent(null), { kind: "gone" });
  assertEquals(readRecent(id), { kind: "in_flight" });
  assertEquals(readRecent(JSON.stringify(made)), { kind: "made", ...made });
  for (
    const bad of [
      "not json",
      JSON.stringify({ ...made, generation: -1 }),
      JSON.stringify({ ...made, eventId: "x" }),
      JSON.stringify({ ...made, patchedAt: "2000" }),
      "null",
    ]
  ) assertEquals(readRecent(bad), { kind: "in_flight" }, bad);
});
