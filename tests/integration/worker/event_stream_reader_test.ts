/**
 * startStreamReader() against a real Valkey: the cluster's consumer group
 * delivers every entry appended after it was created to one replica each,
 * in order; a replica's own pending entries are read again after a
 * restart; entries a dead replica left pending are taken over; a consumer
 * with nothing pending leaves on shutdown; a Valkey restart without
 * persistence (the group is gone) is survived.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/eventually.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { connectValkey, startValkey, testSettings } from "../../helpers/valkey.ts";
import { createLogger } from "../../../lib/log.ts";
import { EVENTS_STREAM, type StreamEntry } from "../../../shared/event_stream.ts";
import { createValkeyClient, type ValkeyCommands } from "../../../shared/valkey_client.ts";
import {
  startStreamReader,
  type StreamReaderOptions,
} from "../../../worker/event_stream_reader.ts";

const quiet = createLogger({ level: "error", write: () => {} });
const GROUP = "prod";

type Target = { host: string; port: number };

/** A reader as the worker runs one; `seen` collects the messages it handled, in order. */
function reader(
  target: Target,
  consumer: string,
  options: Partial<StreamReaderOptions> & { ackOnly?: (m: string) => boolean } = {},
) {
  const controller = new AbortController();
  const client = createValkeyClient(testSettings(target), { name: consumer, logger: quiet });
  const seen: (string | undefined)[] = [];
  const events = { reading: [] as boolean[], claimed: 0, failed: 0 };
  const running = startStreamReader({
    client,
    group: GROUP,
    consumer,
    logger: quiet,
    events: {
      reading: (on) => events.reading.push(on),
      failed: () => events.failed++,
      claimed: (n) => events.claimed += n,
    },
    handle: async (entries: StreamEntry[], ack) => {
      for (const entry of entries) {
        seen.push(entry.message);
        if (!options.ackOnly || (entry.message && options.ackOnly(entry.message))) {
          await ack(entry.id);
        }
      }
    },
    signal: controller.signal,
    blockMs: 200,
    claimIdleMs: 300,
    claimEveryMs: 100,
    ...options,
  });
  return {
    ...running,
    seen,
    events,
    async stop() {
      controller.abort();
      await running.stopped;
      client.disconnect();
    },
  };
}

const pendingOf = async (valkey: Pick<ValkeyCommands, "call">) =>
  (await valkey.call("XPENDING", EVENTS_STREAM, GROUP) as unknown[])[0];

Deno.test({
  ignore: withoutValkey(),
  name:
    "startStreamReader() delivers each entry appended after the group exists once, in order, across replicas",
  async fn() {
    const server = await startValkey();
    const valkey = await connectValkey(server);
    await valkey.call("XADD", EVENTS_STREAM, "*", "m", "before the cluster existed");
    const a = reader(server, "a");
    const b = reader(server, "b");
    try {
      await eventually("both grouped", () => a.grouped() && b.grouped(), 5000, 10);
      for (let i = 0; i < 40; i++) await valkey.call("XADD", EVENTS_STREAM, "*", "m", `e${i}`);
      await eventually("all handled", () => a.seen.length + b.seen.length === 40, 10_000, 10);
      const all = [...a.seen, ...b.seen].sort((x, y) => Number(x!.slice(1)) - Number(y!.slice(1)));
      assertEquals(all, Array.from({ length: 40 }, (_, i) => `e${i}`), "each once, none before");
      for (const r of [a, b]) {
        const order = r.seen.map((m) => Number(m!.slice(1)));
        assertEquals(order, [...order].sort((x, y) => x - y), "each replica in append order");
      }
      assertEquals(await pendingOf(valkey), 0, "every entry acknowledged");
    } finally {
      await a.stop();
      await b.stop();
      valkey.disconnect();
      await server.stop();
    }
  },
});

Deno.test({
  ignore: withoutValkey(),
  name:
    "startStreamReader() takes over what a dead replica left pending, and re-reads its own pending after a restart",
  async fn(t) {
    const server = await startValkey();
    const valkey = await connectValkey(server);
    try {
      await valkey.call("XGROUP", "CREATE", EVENTS_STREAM, GROUP, "$", "MKSTREAM");
      await valkey.call("XADD", EVENTS_STREAM, "*", "m", "orphan");
      await valkey.call("XADD", EVENTS_STREAM, "*", "m", "mine");
      await t.step(
        "a replica that dies after reading leaves its entries to the others",
        async () => {
          // "dead" reads the first entry and never acknowledges it.
          await valkey.call(
            "XREADGROUP",
            "GROUP",
            GROUP,
            "dead",
            "COUNT",
            1,
            "STREAMS",
            EVENTS_STREAM,
            ">",
          );
          const live = reader(server, "live");
          try {
            await eventually("both handled", () => live.seen.length === 2, 10_000, 10);
            assertEquals(live.seen.sort(), ["mine", "orphan"]);
            assertEquals(live.events.claimed, 1);
            assertEquals(await pendingOf(valkey), 0);
          } finally {
            await live.stop();
          }
        },
      );
      await t.step(
        "a replica restarted under its name reads its own pending entries first",
        async () => {
          await valkey.call("XADD", EVENTS_STREAM, "*", "m", "delivered, reply lost");
          await valkey.call(
            "XREADGROUP",
            "GROUP",
            GROUP,
            "same",
            "COUNT",
            1,
            "STREAMS",
            EVENTS_STREAM,
            ">",
          );
          const again = reader(server, "same", { claimIdleMs: 3_600_000 });
          try {
            await eventually("own pending handled", () => again.seen.length === 1, 5000, 10);
            assertEquals(again.seen, ["delivered, reply lost"]);
            assertEquals(again.events.claimed, 0);
          } finally {
            await again.stop();
          }
        },
      );
      await t.step("an entry trimmed while pending reads as one without a message", async () => {
        await valkey.call("XADD", EVENTS_STREAM, "*", "m", "to be trimmed");
        await valkey.call(
          "XREADGROUP",
          "GROUP",
          GROUP,
          "slow",
          "COUNT",
          1,
          "STREAMS",
          EVENTS_STREAM,
          ">",
        );
        await valkey.call("XTRIM", EVENTS_STREAM, "MAXLEN", 0);
        const slow = reader(server, "slow", { claimIdleMs: 3_600_000 });
        try {
          await eventually("handled", () => slow.seen.length === 1, 5000, 10);
          assertEquals(slow.seen, [undefined]);
          assertEquals(await pendingOf(valkey), 0, "acknowledged all the same");
        } finally {
          await slow.stop();
        }
      });
    } finally {
      valkey.disconnect();
      await server.stop();
    }
  },
});

Deno.test({
  ignore: withoutValkey(),
  name:
    "startStreamReader() leaves on shutdown only with nothing pending, and survives a Valkey restart that lost the group",
  async fn(t) {
    const server = await startValkey();
    const valkey = await connectValkey(server);
    const consumers = async () =>
      ((await valkey.call("XINFO", "CONSUMERS", EVENTS_STREAM, GROUP)) as unknown[][]).map((c) =>
        String(c[1])
      ).sort();
    try {
      await t.step("shutdown", async () => {
        const done = reader(server, "done");
        const holding = reader(server, "holding", { ackOnly: () => false, claimIdleMs: 3_600_000 });
        await eventually("grouped", () => done.grouped() && holding.grouped(), 5000, 10);
        // Each reader blocks in turn; add until "holding" got one it will not acknowledge.
        await eventually("holding has one", async () => {
          await valkey.call("XADD", EVENTS_STREAM, "*", "m", "x");
          await new Promise((r) => setTimeout(r, 50));
          return holding.seen.length > 0;
        }, 5000);
        await done.stop();
        await holding.stop();
        assertEquals(await consumers(), ["holding"], "the one with pending entries stays");
      });
      await t.step("a restart without persistence", async () => {
        const r = reader(server, "after");
        try {
          await eventually("reading", () => r.reading(), 5000, 10);
          const early = await connectValkey(server);
          await early.call("XADD", EVENTS_STREAM, "*", "m", "read before the restart");
          await eventually("read", () => r.seen.includes("read before the restart"), 5000, 10);
          early.disconnect();
          await server.restart();
          // Web appends to a new stream before the reader notices its group is gone.
          const first = await connectValkey(server);
          await first.call("XADD", EVENTS_STREAM, "*", "m", "appended before the group came back");
          first.disconnect();
          await eventually("failed once", () => r.events.failed > 0, 10_000, 10);
          const fresh = await connectValkey(server);
          try {
            await eventually(
              "group again",
              async () =>
                ((await fresh.call("XINFO", "GROUPS", EVENTS_STREAM).catch(() => [])) as unknown[])
                  .length === 1,
              10_000,
              50,
            );
            await fresh.call("XADD", EVENTS_STREAM, "*", "m", "after restart");
            await eventually("handled", () => r.seen.includes("after restart"), 10_000, 10);
            assert(r.seen.includes("appended before the group came back"), r.seen.join());
          } finally {
            fresh.disconnect();
          }
        } finally {
          await r.stop();
        }
      });
    } finally {
      valkey.disconnect();
      await server.stop();
    }
  },
});

Deno.test({
  ignore: withoutValkey(),
  name:
    "startStreamReader() keeps a long batch its own: another replica takes none of it over while it works",
  async fn() {
    const server = await startValkey();
    const valkey = await connectValkey(server);
    const handled: string[] = [];
    // Both entries are there before the slow replica reads: it gets them in one batch.
    await valkey.call("XGROUP", "CREATE", EVENTS_STREAM, GROUP, "$", "MKSTREAM");
    for (const m of ["a", "b"]) await valkey.call("XADD", EVENTS_STREAM, "*", "m", m);
    // Each entry takes longer than the take-over limit; the refresh (every third of it) leaves
    // room for a loaded machine's late timers.
    const slow = reader(server, "slow", {
      claimIdleMs: 2000,
      handle: async (entries, ack) => {
        for (const entry of entries) {
          await new Promise((r) => setTimeout(r, 2500));
          handled.push(entry.message!);
          await ack(entry.id);
        }
      },
    });
    let other: ReturnType<typeof reader> | undefined;
    try {
      await eventually(
        "the slow replica holds both",
        async () => {
          const [count] = await valkey.call("XPENDING", EVENTS_STREAM, GROUP) as [number];
          return count === 2;
        },
        5000,
        10,
      );
      other = reader(server, "other", { claimIdleMs: 2000 });
      await eventually("all handled", () => handled.length === 2, 20_000, 10);
      assertEquals(handled, ["a", "b"]);
      assertEquals(other.events.claimed, 0, "nothing taken over from a replica that works");
      assertEquals(other.seen, []);
    } finally {
      await other?.stop();
      await slow.stop();
      valkey.disconnect();
      await server.stop();
    }
  },
});
