import { assert, assertEquals } from "../helpers/assert.ts";
import { backoffDelay, sleep, untilAborted } from "../../lib/backoff.ts";

Deno.test("backoffDelay() doubles from the base, stays within 50-100% of it, and caps at the maximum", () => {
  for (let i = 0; i < 200; i++) {
    const first = backoffDelay(0);
    assert(first >= 50 && first <= 100, `attempt 0: ${first}`);
    const third = backoffDelay(2);
    assert(third >= 200 && third <= 400, `attempt 2: ${third}`);
    const late = backoffDelay(1000);
    assert(late >= 2500 && late <= 5000, `attempt 1000: ${late}`);
    const custom = backoffDelay(3, 10, 60);
    assert(custom >= 30 && custom <= 60, `custom: ${custom}`);
  }
});

Deno.test("sleep() resolves early, without throwing, when its signal aborts", async () => {
  const controller = new AbortController();
  const started = Date.now();
  const slept = sleep(60_000, controller.signal);
  controller.abort();
  await slept;
  assert(Date.now() - started < 5000);
  const aborted = AbortSignal.abort();
  assertEquals(await sleep(60_000, aborted), undefined);
  await sleep(1);
});

Deno.test("untilAborted() resolves when the signal aborts, at once if it already has, and not before", async () => {
  const controller = new AbortController();
  let done = false;
  const waiting = untilAborted(controller.signal).then(() => done = true);
  await sleep(20);
  assertEquals(done, false);
  controller.abort();
  await waiting;
  assertEquals(done, true);
  assertEquals(await untilAborted(AbortSignal.abort()), undefined);
});
