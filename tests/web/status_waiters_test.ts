import { assertEquals } from "../helpers/assert.ts";
import {
  admitWaiter,
  createStatusWaiters,
  repositoryShare,
  type StatusWaiters,
  type Waiter,
  type WatchRequest,
} from "../../web/status_waiters.ts";

const A = "a".repeat(64);
const B = "b".repeat(64);

/** Registers a waiter that must be admitted. */
function admitted(waiters: StatusWaiters, request: WatchRequest): Waiter {
  const watched = waiters.watch(request);
  if ("refused" in watched) throw new Error(`refused: ${watched.refused}`);
  return watched;
}

Deno.test("createStatusWaiters() wakes on a change or at the deadline, and holds no more than its bound", async () => {
  const waiters = createStatusWaiters({ max: 2 });
  const now = Date.now();
  const a = admitted(waiters, { id: "a", repository: A, untilMs: now + 10_000 });
  const b = admitted(waiters, { id: "b", repository: B, untilMs: now + 20 });
  assertEquals(waiters.watch({ id: "c", repository: "c", untilMs: now + 10_000 }), {
    refused: "full",
  });
  assertEquals(waiters.size(), 2);
  waiters.notify("a");
  assertEquals(await a.ended, "changed");
  assertEquals(await b.ended, "deadline");
  assertEquals(waiters.size(), 0);
  const controller = new AbortController();
  const c = admitted(waiters, {
    id: "c",
    repository: A,
    untilMs: now + 10_000,
    signals: [undefined, controller.signal],
  });
  controller.abort();
  assertEquals(await c.ended, "aborted");
  const d = admitted(waiters, { id: "d", repository: A, untilMs: now + 10_000 });
  d.cancel();
  assertEquals(await d.ended, "aborted");
  assertEquals(waiters.size(), 0);
});

Deno.test("createStatusWaiters() frees a slot the moment any of a waiter's signals aborts", async () => {
  const waiters = createStatusWaiters({ max: 2 });
  const until = Date.now() + 60_000;
  const shutdown = new AbortController();
  const clients = [new AbortController(), new AbortController()];
  const held = clients.map((client, i) =>
    admitted(waiters, {
      id: `e${i}`,
      repository: i === 0 ? A : B,
      untilMs: until,
      signals: [shutdown.signal, client.signal],
    })
  );
  assertEquals(waiters.watch({ id: "x", repository: "c", untilMs: until }), { refused: "full" });
  // The first client goes away: its slot is free at once, long before its deadline.
  clients[0].abort();
  assertEquals(waiters.size(), 1);
  assertEquals(await held[0].ended, "aborted");
  const next = admitted(waiters, {
    id: "x",
    repository: "c",
    untilMs: until,
    signals: [shutdown.signal],
  });
  // Shutdown ends every wait; a signal already aborted ends a new one at once.
  shutdown.abort();
  assertEquals([await held[1].ended, await next.ended], ["aborted", "aborted"]);
  assertEquals(waiters.size(), 0);
  const late = admitted(waiters, {
    id: "y",
    repository: A,
    untilMs: until,
    signals: [shutdown.signal],
  });
  assertEquals([await late.ended, waiters.size()], ["aborted", 0]);
});

Deno.test("repositoryShare() is a quarter of the bound rounded up, at least one", async (t) => {
  const cases: [number, number][] = [[1, 1], [2, 1], [4, 1], [5, 2], [8, 2], [9, 3], [1000, 250]];
  for (const [max, share] of cases) {
    await t.step(`STATUS_MAX_WAITERS ${max}: ${share}`, () => {
      assertEquals(repositoryShare(max), share);
    });
  }
});

Deno.test("admitWaiter() refuses when every slot is held, then when the repository holds its share", async (t) => {
  const cases: [string, Parameters<typeof admitWaiter>[0], ReturnType<typeof admitWaiter>][] = [
    ["an idle replica", { max: 1000, held: 0, heldByRepository: 0 }, "admitted"],
    ["a repository below its share", { max: 1000, held: 500, heldByRepository: 249 }, "admitted"],
    [
      "a repository at its share",
      { max: 1000, held: 250, heldByRepository: 250 },
      "repository_share",
    ],
    ["every slot held by others", { max: 1000, held: 1000, heldByRepository: 0 }, "full"],
    ["full and at its share", { max: 4, held: 4, heldByRepository: 1 }, "full"],
    ["a bound of 1: the first waiter", { max: 1, held: 0, heldByRepository: 0 }, "admitted"],
    ["a bound of 1: the second", { max: 1, held: 1, heldByRepository: 1 }, "full"],
    ["a bound of 4: one each", { max: 4, held: 1, heldByRepository: 1 }, "repository_share"],
    ["a bound of 4: another repository", { max: 4, held: 3, heldByRepository: 0 }, "admitted"],
    ["a bound of 5: two each", { max: 5, held: 1, heldByRepository: 1 }, "admitted"],
  ];
  for (const [name, input, decision] of cases) {
    await t.step(`${name}: ${decision}`, () => assertEquals(admitWaiter(input), decision));
  }
});

Deno.test("security: createStatusWaiters() keeps three quarters of the slots for other repositories", () => {
  const waiters = createStatusWaiters({ max: 8 });
  const until = Date.now() + 60_000;
  // One repository floods: it gets its share of 2 and no more, however many it sends.
  const flood = [0, 1].map((i) =>
    admitted(waiters, { id: `f${i}`, repository: A, untilMs: until })
  );
  for (let i = 0; i < 10; i++) {
    assertEquals(waiters.watch({ id: `f${i}`, repository: A, untilMs: until }), {
      refused: "repository_share",
    });
  }
  // The others still find room, each within its own share.
  const others = ["c", "d", "e"].flatMap((repository) =>
    [0, 1].map((i) => admitted(waiters, { id: `${repository}${i}`, repository, untilMs: until }))
  );
  assertEquals(waiters.size(), 8);
  assertEquals(waiters.watch({ id: "g", repository: "g", untilMs: until }), { refused: "full" });
  // A slot the flooding repository gives back is its own again.
  flood[0].cancel();
  admitted(waiters, { id: "f9", repository: A, untilMs: until }).cancel();
  for (const waiter of [...flood, ...others]) waiter.cancel();
  assertEquals(waiters.size(), 0);
});
