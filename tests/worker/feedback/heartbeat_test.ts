/**
 * The cluster heartbeat with a fake clock and a recording client: it beats at
 * once when the replica becomes ready, then every interval, never while
 * unready, prunes clusters silent for a day, and keeps trying after a failure.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { fakeClock } from "../../helpers/fake_clock.ts";
import { CLUSTERS_KEY } from "../../../shared/event_status.ts";
import { createLogger } from "../../../lib/log.ts";
import { CLUSTER_FORGET_MS, startHeartbeat } from "../../../worker/feedback/heartbeat.ts";

function recorder(fail: () => boolean) {
  const beats: unknown[][] = [];
  const client = {
    multi() {
      const commands: unknown[][] = [];
      const chain = {
        zadd: (...args: unknown[]) => (commands.push(["zadd", ...args]), chain),
        zremrangebyscore: (...args: unknown[]) => (commands.push(["zrem", ...args]), chain),
        exec: () => {
          if (fail()) return Promise.reject(new Error("Connection is closed."));
          beats.push(...commands);
          return Promise.resolve([]);
        },
      };
      return chain;
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
    // deno-lint-ignore no-explicit-any
    client: client as any,
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
    ["zadd", CLUSTERS_KEY, 1_006_000, "prod"],
    ["zrem", CLUSTERS_KEY, "-inf", 1_006_000 - CLUSTER_FORGET_MS],
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
