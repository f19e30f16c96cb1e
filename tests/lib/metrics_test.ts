/**
 * The Prometheus text exposition (version 0.0.4) of the registry, as a
 * scraper reads it: HELP and TYPE per family, one sample per label set,
 * escaped label values, cumulative histogram buckets.
 */

import { assertEquals } from "../helpers/assert.ts";
import { createRegistry } from "../../lib/metrics.ts";

Deno.test("a registry renders counters and gauges with HELP, TYPE and one sample per label set", () => {
  const registry = createRegistry();
  const requests = registry.counter("app_requests_total", "Requests by code.");
  const up = registry.gauge("app_up", "1 while up.");
  requests.inc({ code: "202", route: "/event" });
  requests.inc({ route: "/event", code: "202" }, 2);
  requests.inc({ code: "403", route: "/event" });
  up.set(1);
  assertEquals(requests.get({ route: "/event", code: "202" }), 3);
  assertEquals(requests.get({ code: "500" }), 0);
  assertEquals(up.get(), 1);
  assertEquals(
    registry.render(),
    [
      "# HELP app_requests_total Requests by code.",
      "# TYPE app_requests_total counter",
      'app_requests_total{code="202",route="/event"} 3',
      'app_requests_total{code="403",route="/event"} 1',
      "# HELP app_up 1 while up.",
      "# TYPE app_up gauge",
      "app_up 1",
      "",
    ].join("\n"),
  );
});

Deno.test("a registry escapes backslash, quote and newline in label values", () => {
  const registry = createRegistry();
  registry.counter("c_total", "c").inc({ reason: 'a\\b"c\nd' });
  assertEquals(registry.render().split("\n")[2], 'c_total{reason="a\\\\b\\"c\\nd"} 1');
});

Deno.test("a histogram renders cumulative buckets, +Inf, sum and count per label set", () => {
  const registry = createRegistry();
  const h = registry.histogram("d_seconds", "Durations.", [0.1, 1]);
  h.observe(0.05, { route: "/a" });
  h.observe(0.5, { route: "/a" });
  h.observe(5, { route: "/a" });
  h.observe(0.1);
  assertEquals(registry.render().split("\n"), [
    "# HELP d_seconds Durations.",
    "# TYPE d_seconds histogram",
    'd_seconds_bucket{route="/a",le="0.1"} 1',
    'd_seconds_bucket{route="/a",le="1"} 2',
    'd_seconds_bucket{route="/a",le="+Inf"} 3',
    'd_seconds_sum{route="/a"} 5.55',
    'd_seconds_count{route="/a"} 3',
    'd_seconds_bucket{le="0.1"} 1',
    'd_seconds_bucket{le="1"} 1',
    'd_seconds_bucket{le="+Inf"} 1',
    "d_seconds_sum 0.1",
    "d_seconds_count 1",
    "",
  ]);
});

Deno.test("a family with no samples yet renders only its HELP and TYPE", () => {
  const registry = createRegistry();
  registry.counter("none_total", "Nothing yet.");
  assertEquals(registry.render(), "# HELP none_total Nothing yet.\n# TYPE none_total counter\n");
});

Deno.test("a sampled family reads its value at each render, not at registration", () => {
  const registry = createRegistry();
  let value = 1;
  registry.sampled("app_things", "Things now.", "gauge", () => value);
  registry.sampled("app_seconds_total", "Seconds spent.", "counter", () => 2.5);
  const before = registry.render();
  value = 7;
  assertEquals(before.split("\n").slice(0, 3), [
    "# HELP app_things Things now.",
    "# TYPE app_things gauge",
    "app_things 1",
  ]);
  assertEquals(registry.render().split("\n"), [
    "# HELP app_things Things now.",
    "# TYPE app_things gauge",
    "app_things 7",
    "# HELP app_seconds_total Seconds spent.",
    "# TYPE app_seconds_total counter",
    "app_seconds_total 2.5",
    "",
  ]);
});

Deno.test("a sampled family without a value is left out of the render, HELP and TYPE too, and the rest renders", async (t) => {
  const cases: [string, () => number | undefined][] = [
    ["undefined (not readable here)", () => undefined],
    ["a read that throws (a permission denied)", () => {
      throw new Deno.errors.NotCapable("Requires read access");
    }],
    ["NaN", () => NaN],
    ["Infinity", () => Infinity],
  ];
  for (const [name, read] of cases) {
    await t.step(name, () => {
      const registry = createRegistry();
      registry.gauge("before", "b").set(1);
      registry.sampled("hidden", "Not known here.", "gauge", read);
      registry.gauge("after", "a").set(2);
      assertEquals(
        registry.render(),
        [
          "# HELP before b",
          "# TYPE before gauge",
          "before 1",
          "# HELP after a",
          "# TYPE after gauge",
          "after 2",
          "",
        ].join("\n"),
      );
    });
  }
});
