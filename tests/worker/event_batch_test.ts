/** restartTimes(): what a backlog read in one batch writes as each event's restartedAt. */

import { assertEquals } from "../helpers/assert.ts";
import { restartTimes } from "../../worker/event_batch.ts";

const at = (seconds: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, seconds)).toISOString();
const event = (image: string, seconds: number) => ({ image, time: at(seconds) });
const iso = (dates: Date[]) => dates.map((d) => d.toISOString());

Deno.test("restartTimes() gives every event of one image the newest push's time, so each Deployment restarts once", () => {
  assertEquals(
    iso(restartTimes([event("a", 1), event("b", 2), event("a", 3), event("a", 4)])),
    [at(4), at(2), at(4), at(4)],
  );
});

Deno.test("restartTimes() leaves an event alone when no later one names its image", () => {
  assertEquals(iso(restartTimes([event("a", 1), event("b", 2)])), [at(1), at(2)]);
  assertEquals(restartTimes([]), []);
});

Deno.test("restartTimes() never moves an event's restart back in time (web's clocks may disagree)", () => {
  // A later entry with an earlier time (two web replicas, clock skew) does not pull the first back.
  assertEquals(iso(restartTimes([event("a", 5), event("a", 3)])), [at(5), at(3)]);
});

Deno.test("restartTimes() lends no event's time from ahead of the worker's clock: that event is dropped when handled", () => {
  assertEquals(iso(restartTimes([event("a", 1), event("a", 50)], Date.parse(at(10)))), [
    at(1),
    at(50),
  ]);
  assertEquals(
    iso(restartTimes([event("a", 1), event("a", 5), event("a", 50)], Date.parse(at(10)))),
    [at(5), at(5), at(50)],
  );
});
