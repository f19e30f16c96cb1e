/** /healthz, /readyz and /metrics as a kubelet and a scraper see them. */

import { assertEquals } from "../helpers/assert.ts";
import { createRegistry } from "../../lib/metrics.ts";
import { probeRoutes, type Readiness, READINESS_DETAIL_MAX_CHARS } from "../../lib/probes.ts";

function routes(readiness: Record<string, () => Promise<Readiness> | Readiness>) {
  const registry = createRegistry();
  const gauge = registry.gauge("krt_scrapes", "Scrapes so far.");
  let scrapes = 0;
  return probeRoutes({ readiness, registry, beforeScrape: () => gauge.set(++scrapes) });
}

Deno.test("/healthz answers 200 whatever the readiness checks say", async () => {
  const res = await routes({ valkey: () => false })["/healthz"]();
  assertEquals([res.status, await res.json()], [200, { status: "ok" }]);
  assertEquals(res.headers.get("cache-control"), "no-store");
});

Deno.test("/readyz answers 200 only when every check passes, naming each", async (t) => {
  for (
    const [name, readiness, status, body] of [
      ["no checks", {}, 200, { status: "ready", checks: {} }],
      ["all pass", { a: () => true, b: () => Promise.resolve(true) }, 200, {
        status: "ready",
        checks: { a: "ok", b: "ok" },
      }],
      ["one fails", { a: () => true, b: () => Promise.resolve(false) }, 503, {
        status: "not ready",
        checks: { a: "ok", b: "failing" },
      }],
      [
        "a check that throws counts as failing",
        {
          a: (): boolean => {
            throw new Error("boom");
          },
          b: () => Promise.reject(new Error("boom")),
        },
        503,
        { status: "not ready", checks: { a: "failing", b: "failing" } },
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      const res = await routes(readiness)["/readyz"]();
      assertEquals([res.status, await res.json()], [status, body]);
    });
  }
});

Deno.test("/metrics refreshes gauges before it renders, as Prometheus text", async () => {
  const r = routes({});
  await r["/metrics"]();
  const res = await r["/metrics"]();
  assertEquals(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assertEquals(
    await res.text(),
    "# HELP krt_scrapes Scrapes so far.\n# TYPE krt_scrapes gauge\nkrt_scrapes 2\n",
  );
});

Deno.test("/readyz shows a failing check's detail, one bounded line, and only a failing check's", async (t) => {
  const long = "x".repeat(READINESS_DETAIL_MAX_CHARS + 10);
  for (
    const [name, readiness, status, body] of [
      [
        "a failing check with a detail",
        {
          inventory_synced: () => ({ ok: false, detail: "namespace b: 403 Forbidden: no" }),
          subscribed: () => true,
        },
        503,
        {
          status: "not ready",
          checks: { inventory_synced: "failing", subscribed: "ok" },
          details: { inventory_synced: "namespace b: 403 Forbidden: no" },
        },
      ],
      [
        "a passing check's detail is not shown",
        { a: () => Promise.resolve({ ok: true, detail: "all good" }) },
        200,
        { status: "ready", checks: { a: "ok" } },
      ],
      [
        "a failing check without a detail",
        { a: () => ({ ok: false }), b: () => false },
        503,
        { status: "not ready", checks: { a: "failing", b: "failing" } },
      ],
      [
        "security: control characters become spaces, and a long detail is cut",
        {
          a: () => ({ ok: false, detail: `line\n\u001b[2Jtwo\u202E` }),
          b: () => ({ ok: false, detail: long }),
        },
        503,
        {
          status: "not ready",
          checks: { a: "failing", b: "failing" },
          details: { a: "line [2Jtwo", b: `${long.slice(0, READINESS_DETAIL_MAX_CHARS - 1)}…` },
        },
      ],
      [
        "security: a check that throws shows no detail (its message may quote anything)",
        {
          a: (): boolean => {
            throw new Error("token=secret");
          },
        },
        503,
        { status: "not ready", checks: { a: "failing" } },
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      const res = await routes(readiness)["/readyz"]();
      assertEquals([res.status, await res.json()], [status, body]);
    });
  }
});
