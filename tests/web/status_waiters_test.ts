import { assertEquals } from "../helpers/assert.ts";
import { createStatusWaiters } from "../../web/status_waiters.ts";

Deno.test("createStatusWaiters() wakes on a change or at the deadline, and holds no more than its bound", async () => {
  const waiters = createStatusWaiters({ max: 2 });
  const now = Date.now();
  const a = waiters.watch("a", now + 10_000)!;
  const b = waiters.watch("b", now + 20)!;
  assertEquals(waiters.watch("c", now + 10_000), undefined);
  assertEquals(waiters.size(), 2);
  waiters.notify("a");
  assertEquals(await a.ended, "changed");
  assertEquals(await b.ended, "deadline");
  assertEquals(waiters.size(), 0);
  const controller = new AbortController();
  const c = waiters.watch("c", now + 10_000, controller.signal)!;
  controller.abort();
  assertEquals(await c.ended, "aborted");
  const d = waiters.watch("d", now + 10_000)!;
  d.cancel();
  assertEquals(await d.ended, "aborted");
  assertEquals(waiters.size(), 0);
});
