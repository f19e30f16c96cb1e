/**
 * createStreamEvents(): what happens to each entry a read hands over — read,
 * handled in order with the backlog's restart times, acknowledged when done;
 * dropped and trimmed entries acknowledged at once; nothing acknowledged that
 * was still waiting for the inventory at shutdown.
 */

import { assertEquals } from "../helpers/assert.ts";
import { createLogger } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import type { EventMessage } from "../../shared/event.ts";
import type { EventHandler } from "../../worker/events.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";
import { createStreamEvents } from "../../worker/stream_events.ts";

const time = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
const raw = (id: string, image: string, s: number) =>
  JSON.stringify({ id, image, time: time(s), tags: ["dev"] });

function setUp(settled = true) {
  const log: string[] = [];
  const handler: EventHandler = {
    read: (text) => {
      const parsed = JSON.parse(text);
      return Promise.resolve(parsed.id === "bad" ? undefined : parsed as EventMessage);
    },
    handle: (message, restartAt) => {
      log.push(`handle ${message.id} at ${restartAt?.toISOString()}`);
      return Promise.resolve({ kind: "expired" });
    },
  };
  const controller = new AbortController();
  let wake = () => {};
  const inventory = {
    settled: () => settled,
    whenSettled: (signal: AbortSignal) =>
      new Promise<void>((resolve) => {
        wake = resolve;
        if (signal.aborted) resolve();
        signal.addEventListener("abort", () => resolve(), { once: true });
      }),
  };
  const metrics = createWorkerMetrics(createRegistry());
  const handle = createStreamEvents({
    handler,
    inventory,
    logger: createLogger({ level: "error", write: () => {} }),
    metrics,
    signal: controller.signal,
  });
  const ack = (id: string) => {
    log.push(`ack ${id}`);
    return Promise.resolve();
  };
  return { handle, ack, log, controller, metrics, settle: () => wake() };
}

Deno.test("createStreamEvents() handles in order with the backlog's restart times and acknowledges each when done", async () => {
  const { handle, ack, log } = setUp();
  await handle([
    { id: "1-0", message: raw("e1", "a", 1) },
    { id: "2-0", message: raw("bad", "a", 2) },
    { id: "3-0" },
    { id: "4-0", message: raw("e4", "b", 4) },
    { id: "5-0", message: raw("e5", "a", 5) },
  ], ack);
  assertEquals(log, [
    "ack 2-0",
    "ack 3-0",
    `handle e1 at ${time(5)}`,
    "ack 1-0",
    `handle e4 at ${time(4)}`,
    "ack 4-0",
    `handle e5 at ${time(5)}`,
    "ack 5-0",
  ]);
});

Deno.test("createStreamEvents() counts an entry without a message (trimmed) as invalid", async () => {
  const { handle, ack, metrics } = setUp();
  await handle([{ id: "3-0" }], ack);
  assertEquals(metrics.events.get({ result: "invalid" }), 1);
});

Deno.test("createStreamEvents() holds events until the inventory settles, and leaves them unacknowledged on shutdown", async (t) => {
  await t.step("settles: handled", async () => {
    const { handle, ack, log, settle } = setUp(false);
    const done = handle([{ id: "1-0", message: raw("e1", "a", 1) }], ack);
    await new Promise((r) => setTimeout(r, 10));
    assertEquals(log, []);
    settle();
    await done;
    assertEquals(log, [`handle e1 at ${time(1)}`, "ack 1-0"]);
  });
  await t.step("shutdown first: not handled, not acknowledged", async () => {
    const { handle, ack, log, controller } = setUp(false);
    const done = handle([{ id: "1-0", message: raw("e1", "a", 1) }], ack);
    controller.abort();
    await done;
    assertEquals(log, []);
  });
});

Deno.test("createStreamEvents() leaves an event another replica still holds unacknowledged, and stops between events on shutdown", async () => {
  const log: string[] = [];
  const controller = new AbortController();
  const handler: EventHandler = {
    read: (text) => Promise.resolve(JSON.parse(text) as EventMessage),
    handle: (message) => {
      log.push(`handle ${message.id}`);
      if (message.id === "e2") controller.abort();
      return Promise.resolve({ kind: message.id === "e1" ? "busy" : "expired" });
    },
  };
  const handle = createStreamEvents({
    handler,
    inventory: { settled: () => true, whenSettled: () => Promise.resolve() },
    logger: createLogger({ level: "error", write: () => {} }),
    metrics: createWorkerMetrics(createRegistry()),
    signal: controller.signal,
  });
  await handle([
    { id: "1-0", message: raw("e1", "a", 1) },
    { id: "2-0", message: raw("e2", "b", 2) },
    { id: "3-0", message: raw("e3", "c", 3) },
  ], (id) => Promise.resolve(void log.push(`ack ${id}`)));
  assertEquals(log, ["handle e1", "handle e2", "ack 2-0"]);
});
