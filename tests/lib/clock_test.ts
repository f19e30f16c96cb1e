import { REAL_CLOCK } from "../../lib/clock.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

Deno.test("REAL_CLOCK.now() is the wall clock", () => {
  const before = Date.now();
  const now = REAL_CLOCK.now();
  assert(now >= before && now <= Date.now());
});

Deno.test("REAL_CLOCK.schedule() runs the function once, and not at all once cancelled", async () => {
  const ran: string[] = [];
  const { promise, resolve } = Promise.withResolvers<void>();
  const cancel = REAL_CLOCK.schedule(() => ran.push("cancelled"), 1);
  cancel();
  REAL_CLOCK.schedule(() => {
    ran.push("kept");
    resolve();
  }, 5);
  await promise;
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(ran, ["kept"]);
});
