/**
 * createSyncTracker(): when the inventory counts as synced (every scope
 * listed once), as settled (every scope listed or failed a list), which
 * scopes are unavailable and why, and as current (every scope listed, not
 * relisting, heard from within the idle deadline), with a clock the test moves.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { fakeClock } from "../../helpers/fake_clock.ts";
import { createSyncTracker, REASON_MAX_CHARS, scopeLabel } from "../../../worker/inventory/sync.ts";

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

const FORBIDDEN =
  '403 Forbidden: deployments.apps is forbidden: User "system:serviceaccount:krt:worker"' +
  ' cannot list resource "deployments" in API group "apps" in the namespace "b"';

Deno.test("createSyncTracker() is settled once every scope has listed or failed a list, and wakes its waiters then", async () => {
  const sync = createSyncTracker(["a", "b"], { clock: fakeClock(), idleTimeoutMs: IDLE });
  let woken = false;
  const waiting = sync.whenSettled(new AbortController().signal).then(() => woken = true);
  sync.listed("a");
  await Promise.resolve();
  assertEquals([sync.settled(), woken], [false, false], "b has neither listed nor failed");
  assertEquals(sync.listFailed("b", FORBIDDEN), true, "b just became unavailable");
  await waiting;
  assertEquals([sync.settled(), woken, sync.synced()], [true, true, false]);
  assertEquals(sync.listFailed("b", FORBIDDEN), false, "failing again changes nothing");
  sync.listed("b");
  assertEquals([sync.settled(), sync.synced()], [true, true]);
});

Deno.test("createSyncTracker() lets a settled waiter go when its signal aborts", async () => {
  const sync = createSyncTracker(["a"], { clock: fakeClock(), idleTimeoutMs: IDLE });
  const controller = new AbortController();
  const waiting = sync.whenSettled(controller.signal);
  controller.abort();
  await waiting;
  assertEquals(sync.settled(), false);
});

Deno.test("createSyncTracker() calls a scope unavailable while it has never listed and its latest list failed", async (t) => {
  const sync = createSyncTracker(["b", "a", undefined], {
    clock: fakeClock(),
    idleTimeoutMs: IDLE,
  });
  const steps: [string, () => void, { scope: string; reason: string }[]][] = [
    ["nothing tried yet", () => {}, []],
    ["a's first list fails", () => sync.listFailed("a", "500 InternalError: etcd timeout"), [
      { scope: "a", reason: "namespace a: 500 InternalError: etcd timeout" },
    ]],
    ["b's too, and the cluster-wide scope's; sorted by label", () => {
      sync.listFailed("b", FORBIDDEN);
      sync.listFailed(undefined, "NetworkError: Signal timed out.");
    }, [
      { scope: "(cluster)", reason: "cluster-wide: NetworkError: Signal timed out." },
      { scope: "a", reason: "namespace a: 500 InternalError: etcd timeout" },
      { scope: "b", reason: `namespace b: ${FORBIDDEN}` },
    ]],
    ["a's next attempt fails otherwise: the latest reason counts", () => {
      sync.listFailed("a", "403 Forbidden: no");
    }, [
      { scope: "(cluster)", reason: "cluster-wide: NetworkError: Signal timed out." },
      { scope: "a", reason: "namespace a: 403 Forbidden: no" },
      { scope: "b", reason: `namespace b: ${FORBIDDEN}` },
    ]],
    ["a and the cluster list: available again", () => {
      sync.listed("a");
      sync.listed(undefined);
    }, [{ scope: "b", reason: `namespace b: ${FORBIDDEN}` }]],
    ["a listed once: a failed relist leaves it stale, not unavailable", () => {
      sync.relisting("a");
      sync.listFailed("a", "403 Forbidden: the Role is gone");
    }, [{ scope: "b", reason: `namespace b: ${FORBIDDEN}` }]],
  ];
  for (const [name, act, unavailable] of steps) {
    await t.step(name, () => {
      act();
      assertEquals(sync.unavailable(), unavailable);
    });
  }
  assertEquals(sync.scopes(), { b: false, a: false, "(cluster)": true });
});

Deno.test("security: createSyncTracker() keeps a reason to one bounded line without control characters", async (t) => {
  const cases: [string, string, string][] = [
    ["newlines and tabs", "403 Forbidden:\n  line two\r\n\tthree", "403 Forbidden: line two three"],
    ["terminal escapes", "500 \u001b[31mred\u001b[0m", "500 [31mred [0m"],
    ["bidi overrides and zero-width characters", "403 \u202Eevil\u200B", "403 evil"],
    ["nothing left", "\n\u0007", "the list failed"],
  ];
  for (const [name, answer, expected] of cases) {
    await t.step(name, () => {
      const sync = createSyncTracker(["b"], { clock: fakeClock(), idleTimeoutMs: IDLE });
      sync.listFailed("b", answer);
      assertEquals(sync.unavailable()[0].reason, `namespace b: ${expected}`);
    });
  }
  await t.step(`at most ${REASON_MAX_CHARS} characters, marked when cut`, () => {
    const sync = createSyncTracker(["b"], { clock: fakeClock(), idleTimeoutMs: IDLE });
    sync.listFailed("b", `403 Forbidden: ${"é".repeat(500)}`);
    const { reason } = sync.unavailable()[0];
    assertEquals([...reason].length, REASON_MAX_CHARS);
    assertEquals(reason.startsWith("namespace b: 403 Forbidden: éé"), true);
    assertEquals(reason.endsWith("é…"), true);
  });
});

Deno.test("createSyncTracker().readiness() passes while every scope is current, else names each that is not, and why", async (t) => {
  const clock = fakeClock();
  const sync = createSyncTracker(["a", "b"], { clock, idleTimeoutMs: IDLE });
  const steps: [string, () => Promise<void> | void, { ok: boolean; detail?: string }][] = [
    ["nothing listed yet", () => {}, {
      ok: false,
      detail: "namespace a: not listed yet; namespace b: not listed yet",
    }],
    ["a listed, b cannot be", () => {
      sync.listed("a");
      sync.listFailed("b", FORBIDDEN);
    }, { ok: false, detail: `namespace b: ${FORBIDDEN}` }],
    ["b lists", () => sync.listed("b"), { ok: true }],
    ["a relists and its relist fails", () => {
      sync.relisting("a");
      sync.listFailed("a", "403 Forbidden: gone");
    }, { ok: false, detail: "namespace a: relisting; the last list failed: 403 Forbidden: gone" }],
    ["a relisted, then relisting again: the old failure is forgotten", () => {
      sync.listed("a");
      sync.relisting("a");
    }, { ok: false, detail: "namespace a: relisting" }],
    ["a relisted; then nothing heard past the idle deadline", async () => {
      sync.listed("a");
      await clock.advance(IDLE + 1);
    }, {
      ok: false,
      detail: "namespace a: nothing heard from the API server within 1 s; " +
        "namespace b: nothing heard from the API server within 1 s",
    }],
    ["a's watch is refused: the refusal is named", () => {
      sync.watchFailed("a", "403 Forbidden:\nno watch");
    }, {
      ok: false,
      detail: "namespace a: nothing heard from the API server within 1 s; the last watch failed: " +
        "403 Forbidden: no watch; namespace b: nothing heard from the API server within 1 s",
    }],
    ["a's watch is answered again", () => sync.heard("a"), {
      ok: false,
      detail: "namespace b: nothing heard from the API server within 1 s",
    }],
    ["a silent again: the old refusal is not repeated", () => clock.advance(IDLE + 1), {
      ok: false,
      detail: "namespace a: nothing heard from the API server within 1 s; " +
        "namespace b: nothing heard from the API server within 1 s",
    }],
  ];
  for (const [name, act, readiness] of steps) {
    await t.step(name, async () => {
      await act();
      assertEquals(sync.readiness(), readiness);
      assertEquals(sync.current(), readiness.ok);
    });
  }
});

Deno.test("createSyncTracker().readiness() names three scopes and counts the rest", () => {
  const sync = createSyncTracker(["e", "d", "c", "b", "a"], {
    clock: fakeClock(),
    idleTimeoutMs: IDLE,
  });
  assertEquals(sync.readiness(), {
    ok: false,
    detail:
      "namespace a: not listed yet; namespace b: not listed yet; namespace c: not listed yet;" +
      " and 2 more scopes not current",
  });
});
