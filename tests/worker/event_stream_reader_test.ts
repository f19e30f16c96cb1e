/** goneConsumers(): which consumers a replica removes (the reader itself runs in tests/integration/worker/). */

import { assertEquals } from "../helpers/assert.ts";
import { GONE_CONSUMER_IDLE_MS, goneConsumers } from "../../worker/event_stream_reader.ts";

const consumer = (
  name: string,
  pending: number,
  idle: number,
) => ["name", name, "pending", pending, "idle", idle, "inactive", idle];

Deno.test("goneConsumers() names only others with nothing pending, silent for an hour", () => {
  const old = GONE_CONSUMER_IDLE_MS + 1;
  assertEquals(
    goneConsumers([
      consumer("gone", 0, old),
      consumer("holding", 2, old),
      consumer("recent", 0, 1000),
      consumer("me", 0, old),
    ], "me"),
    ["gone"],
  );
});

Deno.test("goneConsumers() ignores replies of another shape", () => {
  assertEquals(goneConsumers(null, "me"), []);
  assertEquals(goneConsumers(["x", ["name"], ["name", 5, "pending", 0, "idle", 1e12]], "me"), []);
});
