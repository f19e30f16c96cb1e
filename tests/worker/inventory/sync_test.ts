/**
 * createSyncTracker(): when the inventory counts as synced (every scope
 * listed once) and as current (every scope listed, not relisting, heard from
 * within the idle deadline), with a clock the test moves.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { fakeClock } from "../../helpers/fake_clock.ts";
import { createSyncTracker, scopeLabel } from "../../../worker/inventory/sync.ts";

const IDLE = 1000;

Deno.test("createSyncTracker() is synced once every scope has listed, and wakes its waiters then", async () => {
  const sync = createSyncTracker(["a", "b"], { clock: fakeClock(), idleTimeoutMs: IDLE });
  let woken = false;
  const waiting = sync.whenSynced(new AbortController().signal).then(() => woken = true);
  sync.listed("a");
  await Promise.resolve();
  assertEquals([sync.synced(), woken], [false, false]);
  sync.listed("b");
  await waiting;
  assertEquals([sync.synced(), woken], [true, true]);
  // Relisting later does not undo the first sync.
  sync.relisting("a");
  assertEquals(sync.synced(), true);
});

Deno.test("createSyncTracker() lets a waiter go when its signal aborts", async () => {
  const sync = createSyncTracker([undefined], { clock: fakeClock(), idleTimeoutMs: IDLE });
  const controller = new AbortController();
  const waiting = sync.whenSynced(controller.signal);
  controller.abort();
  await waiting;
  assertEquals(sync.synced(), false);
});

Deno.test("createSyncTracker() calls a scope current only when listed, not relisting and heard from in time", async (t) => {
  const clock = fakeClock();
  const sync = createSyncTracker(["a"], { clock, idleTimeoutMs: IDLE });
  const steps: [string, () => Promise<void> | void, boolean][] = [
    ["not yet listed", () => {}, false],
    ["listed just now", () => sync.listed("a"), true],
    ["at the idle deadline", () => clock.advance(IDLE), true],
    ["past the idle deadline", () => clock.advance(1), false],
    ["heard from again", () => sync.heard("a"), true],
    ["relisting", () => sync.relisting("a"), false],
    ["heard from while relisting", () => sync.heard("a"), false],
    ["listed again", () => sync.listed("a"), true],
  ];
  for (const [name, act, current] of steps) {
    await t.step(name, async () => {
      await act();
      assertEquals(sync.current(), current);
      assertEquals(sync.scopes(), { a: current });
    });
  }
});

Deno.test("createSyncTracker() is current only while every scope is, each under its label", () => {
  const sync = createSyncTracker(["a", "b"], { clock: fakeClock(), idleTimeoutMs: IDLE });
  sync.listed("a");
  assertEquals(sync.current(), false);
  assertEquals(sync.scopes(), { a: true, b: false });
  assertEquals(sync.hasListed("a"), true);
  assertEquals(sync.hasListed("b"), false);
  assertEquals(scopeLabel(undefined), "(cluster)");
  assertEquals(
    createSyncTracker([undefined], { clock: fakeClock(), idleTimeoutMs: IDLE }).scopes(),
    { "(cluster)": false },
  );
});
