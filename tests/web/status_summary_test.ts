import { BINDING, report, T0 } from "../helpers/status_fixtures.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import type { ClusterReport } from "../../shared/event_status.ts";
import { nextTimedChange, summarizeStatus } from "../../web/status_summary.ts";

Deno.test("summarizeStatus() folds the live clusters' reports into one state", async (t) => {
  const at = (ms: number, reports: ClusterReport[], binding = BINDING) =>
    summarizeStatus({
      id: "e",
      binding,
      reports: new Map(reports.map((r) => [r.cluster, r])),
      now: T0 + ms,
      reportTimeoutMs: 30_000,
    });
  await t.step("no report yet: pending, not final", () => {
    const s = at(1000, []);
    assertEquals([s.state, s.final], ["pending", false]);
    assertEquals(s.clusters.map((c) => c.state), ["pending", "pending"]);
  });
  await t.step("one reported and rolling: in_progress", () => {
    assertEquals(at(1000, [report("east", { restarted: 1, progressing: 1 })]).state, "in_progress");
  });
  await t.step("all complete: succeeded", () => {
    const s = at(5000, [report("east", { restarted: 1, complete: 1 }), report("west", {})]);
    assertEquals([s.state, s.final], ["succeeded", true]);
  });
  await t.step("every cluster matched nothing: no_match", () => {
    assertEquals(at(5000, [report("east", {}), report("west", {})]).state, "no_match");
  });
  await t.step("every match skipped, or nothing matched: skipped, final, not no_match", () => {
    const s = at(5000, [report("east", {}), report("west", { skipped: 1 })]);
    assertEquals([s.state, s.final], ["skipped", true]);
    assertEquals(s.clusters.map((c) => c.state), ["no_match", "skipped"]);
  });
  await t.step("one cluster restarted, another skipped: succeeded", () => {
    const s = at(5000, [
      report("east", { restarted: 1, complete: 1 }),
      report("west", { skipped: 1 }),
    ]);
    assertEquals(s.state, "succeeded");
  });
  await t.step("a dry-run cluster never counts as succeeded", () => {
    const s = at(5000, [
      report("east", { restarted: 1, complete: 1 }),
      report("west", { dry_run: 2 }),
    ]);
    assertEquals([s.state, s.final], ["dry_run", true]);
    assertEquals(s.clusters.map((c) => c.state), ["succeeded", "dry_run"]);
  });
  await t.step(
    "an older worker's succeeded for a dry run, or no_match for skips, is read from its counts",
    () => {
      const dry = { ...report("west", { dry_run: 2 }), state: "succeeded" as const };
      const skips = { ...report("east", { skipped: 1 }), state: "no_match" as const };
      const s = at(5000, [skips, dry]);
      assertEquals(s.clusters.map((c) => c.state), ["skipped", "dry_run"]);
      assertEquals(s.state, "dry_run");
    },
  );
  await t.step("a live cluster never reported: failed with no_report", () => {
    const s = at(31_000, [report("east", { restarted: 1, complete: 1 })]);
    assertEquals([s.state, s.final], ["failed", true]);
    const west = s.clusters.find((c) => c.cluster === "west")!;
    assertEquals(west.state, "no_report");
    assert(west.reason?.includes("30s"));
  });
  await t.step("a failure waits for the other clusters to finish", () => {
    const rolling = at(5000, [
      report("east", { failed: 1 }),
      report("west", { restarted: 1, progressing: 1 }),
    ]);
    assertEquals([rolling.state, rolling.final], ["in_progress", false]);
  });
  await t.step("a cluster that was not live but reported counts too", () => {
    const s = at(5000, [
      report("east", { restarted: 1, complete: 1 }),
      report("west", {}),
      report("north", { rollout_failed: 1, restarted: 1 }),
    ]);
    assertEquals(s.state, "failed");
    assertEquals(s.clusters.map((c) => c.cluster), ["east", "north", "west"]);
  });
  await t.step("an unreadable report fails its cluster instead of hanging", () => {
    const s = summarizeStatus({
      id: "e",
      binding: BINDING,
      reports: new Map([["east", report("east", { restarted: 1, complete: 1 })]]),
      unreadable: ["west"],
      now: T0 + 1000,
      reportTimeoutMs: 30_000,
    });
    assertEquals(s.state, "failed");
  });
  await t.step("no live cluster and no report: failed once overdue, with a reason", () => {
    const none = { ...BINDING, clusters: [] };
    assertEquals(at(1000, [], none).state, "pending");
    const late = at(30_000, [], none);
    assertEquals([late.state, late.final, late.clusters.length], ["failed", true, 0]);
    assert(late.reason);
  });
});

Deno.test("summarizeStatus() explains a known cluster that was not live, and follows it when it catches up", async (t) => {
  const at = (ms: number, reports: ClusterReport[]) =>
    summarizeStatus({
      id: "e",
      binding: BINDING,
      reports: new Map(reports.map((r) => [r.cluster, r])),
      unreachable: ["west"],
      now: T0 + ms,
      reportTimeoutMs: 30_000,
    });
  const west = (s: ReturnType<typeof at>) => s.clusters.find((c) => c.cluster === "west")!;
  await t.step("before the report timeout: pending, with why", () => {
    const s = at(1000, [report("east", { restarted: 1, complete: 1 })]);
    assertEquals([s.state, s.final], ["in_progress", false]);
    assertEquals(west(s).state, "pending");
    assertMatch(west(s).reason!, /not live when the event was published/);
    assertEquals(s.clusters.find((c) => c.cluster === "east")!.reason, undefined);
  });
  await t.step("a live cluster that has not reported yet has no reason", () => {
    const s = at(1000, []);
    assertEquals(s.clusters.map((c) => [c.state, c.reason !== undefined]), [
      ["pending", false],
      ["pending", true],
    ]);
  });
  await t.step("after the report timeout: no_report, with why and how long was waited", () => {
    const s = at(30_000, [report("east", { restarted: 1, complete: 1 })]);
    assertEquals([s.state, s.final], ["failed", true]);
    assertEquals(west(s).state, "no_report");
    assertMatch(west(s).reason!, /not live when the event was published.*within 30s/);
  });
  await t.step("its report, when it returns, decides: succeeded", () => {
    const s = at(600_000, [
      report("east", { restarted: 1, complete: 1 }),
      report("west", { restarted: 1, complete: 1 }),
    ]);
    assertEquals([s.state, s.final], ["succeeded", true]);
    assertEquals(west(s).reason, undefined);
  });
});

Deno.test("summarizeStatus() fails an event a cluster expired, passing the cluster's reason through", async (t) => {
  const expired: ClusterReport = {
    ...report("west", {}),
    state: "expired",
    reason: "the event is older than the catch-up window (1h) when the cluster took it up",
  };
  const summary = (reports: ClusterReport[]) =>
    summarizeStatus({
      id: "e",
      binding: BINDING,
      reports: new Map(reports.map((r) => [r.cluster, r])),
      now: T0 + 5000,
      reportTimeoutMs: 30_000,
    });
  await t.step("expired beside a succeeded cluster: failed, final", () => {
    const s = summary([report("east", { restarted: 1, complete: 1 }), expired]);
    assertEquals([s.state, s.final], ["failed", true]);
    const west = s.clusters.find((c) => c.cluster === "west")!;
    assertEquals([west.state, west.reason], ["expired", expired.reason]);
  });
  await t.step("every cluster expired: failed", () => {
    const s = summary([{ ...expired, cluster: "east" }, expired]);
    assertEquals([s.state, s.final], ["failed", true]);
  });
  await t.step("expired beside a cluster still rolling: in_progress until that one ends", () => {
    const s = summary([report("east", { restarted: 1, progressing: 1 }), expired]);
    assertEquals([s.state, s.final], ["in_progress", false]);
  });
  await t.step("a failed cluster's own reason is passed through", () => {
    const failed = { ...report("east", { failed: 1 }), reason: "the namespace is not watched" };
    const s = summary([failed, report("west", {})]);
    assertEquals(s.clusters[0].reason, "the namespace is not watched");
  });
  await t.step("a report without a reason gets none", () => {
    const s = summary([report("east", { restarted: 1, complete: 1 }), report("west", {})]);
    assertEquals(s.clusters.map((c) => "reason" in c), [false, false]);
  });
});

Deno.test("nextTimedChange() is the report deadline while a cluster is pending", () => {
  const pending = summarizeStatus({
    id: "e",
    binding: BINDING,
    reports: new Map(),
    now: T0,
    reportTimeoutMs: 30_000,
  });
  assertEquals(nextTimedChange(pending, 30_000), T0 + 30_000);
  const rolling = summarizeStatus({
    id: "e",
    binding: BINDING,
    reports: new Map([
      ["east", report("east", { restarted: 1, progressing: 1 })],
      ["west", report("west", {})],
    ]),
    now: T0,
    reportTimeoutMs: 30_000,
  });
  assertEquals(nextTimedChange(rolling, 30_000), undefined);
});
