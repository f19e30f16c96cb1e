/**
 * The cluster heartbeat with a fake clock and a recording client: it beats at
 * once when the replica becomes ready, then every interval, never while
 * unready, prunes clusters silent for a day, and keeps trying after a failure.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { fakeClock } from "../../helpers/fake_clock.ts";
import { CLUSTERS_KEY } from "../../../shared/event_status.ts";
import { createLogger } from "../../../lib/log.ts";
import type { ValkeyCommands } from "../../../shared/valkey_client.ts";
import { CLUSTER_FORGET_MS, startHeartbeat } from "../../../worker/feedback/heartbeat.ts";

function recorder(fail: () => boolean) {
  const beats: unknown[][] = [];
  const client: Pick<ValkeyCommands, "transaction"> = {
    transaction(commands) {
      if (fail()) return Promise.reject(new Error("Valkey is not connected"));
      beats.push(...commands);
      return Promise.resolve(commands.map(() => 1));
    },
  };
  return { beats, client };
}

Deno.test("the heartbeat beats at once when ready, every interval while ready, and never while not", async () => {
  const clock = fakeClock(1_000_000);
  let ready = false;
  let down = false;
  const { beats, client } = recorder(() => down);
  const stop = new AbortController();
  const done = startHeartbeat({
    client,
    clusterName: "prod",
    ready: () => ready,
    logger: createLogger({ level: "error", write: () => {} }),
    signal: stop.signal,
    clock,
    intervalMs: 10_000,
    pollMs: 1000,
  });
  await clock.advance(5_000);
  assertEquals(beats, [], "not ready: no beat");
  ready = true;
  await clock.advance(1000);
  assertEquals(beats, [
    ["ZADD", CLUSTERS_KEY, 1_006_000, "prod"],
    ["ZREMRANGEBYSCORE", CLUSTERS_KEY, "-inf", 1_006_000 - CLUSTER_FORGET_MS],
  ]);
  await clock.advance(9_000);
  assertEquals(beats.length, 2, "not again before the interval");
  await clock.advance(1000);
  assertEquals(beats.length, 4, "again after it");
  down = true;
  await clock.advance(20_000);
  assertEquals(beats.length, 4);
  down = false;
  await clock.advance(1000);
  assertEquals(beats.length, 6, "at once when Valkey is back");
  ready = false;
  await clock.advance(60_000);
  assertEquals(beats.length, 6);
  stop.abort();
  await done;
});
