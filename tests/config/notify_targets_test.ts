import { BINDING, report, T0 } from "../helpers/status_fixtures.ts";
import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { FINAL_OVERALL_STATES, OVERALL_STATES } from "../../shared/event_status.ts";
import { summarizeStatus } from "../../web/status_summary.ts";
import { parseNotifyStates, parseNotifyUrls } from "../../config/notify_targets.ts";

Deno.test("parseNotifyUrls() reads the targets and never quotes one", async (t) => {
  await t.step("empty: none", () => {
    assertEquals(parseNotifyUrls(""), []);
    assertEquals(parseNotifyUrls(" \n, "), []);
  });
  await t.step("comma or newline separated; labels keep scheme, host and port only", () => {
    const targets = parseNotifyUrls(
      "https://hooks.slack.com/services/T0/B0/s3cr3t,\n" +
        "https://user:s3cr3t@example.com:8443/hook?key=s3cr3t\r\n" +
        "http://127.0.0.1:9000/x, http://[::1]/y ,http://localhost/z\n",
    );
    assertEquals(targets.map((t) => t.label), [
      "https://hooks.slack.com",
      "https://example.com:8443",
      "http://127.0.0.1:9000",
      "http://[::1]",
      "http://localhost",
    ]);
    assertEquals(targets[0].url.href, "https://hooks.slack.com/services/T0/B0/s3cr3t");
  });
  await t.step("security: each mistake named by position, the entry never quoted", async (t) => {
    const ok = "https://ok.example/";
    const cases: [string, string, RegExp][] = [
      ["not a URL", `${ok},not a url s3cr3t`, /^entry 2 is not a URL$/],
      ["http elsewhere", `http://example.com/s3cr3t`, /^entry 1 uses http:\/\/; use https:\/\//],
      ["another scheme", `${ok}\nftp://example.com/s3cr3t`, /^entry 2 must use https:\/\/$/],
      ["a fragment", `https://example.com/#s3cr3t`, /^entry 1 has a fragment/],
      ["an empty fragment", `https://example.com/s3cr3t#`, /^entry 1 has a fragment/],
      ["a repeat", `${ok},https://OK.example:443/`, /^entry 2 repeats entry 1$/],
      ["more than 10", Array.from({ length: 11 }, (_, i) => `${ok}${i}`).join(","), /at most 10/],
    ];
    for (const [name, raw, message] of cases) {
      await t.step(name, () => {
        const err = assertThrows(() => parseNotifyUrls(raw), { message });
        assert(!err.message.includes("s3cr3t") && !err.message.includes("\n"), err.message);
        assertEquals(err.cause, undefined);
      });
    }
  });
});

Deno.test("parseNotifyStates() reads final overall states", async (t) => {
  await t.step("empty: every final state", () => {
    assertEquals(parseNotifyStates(""), ["succeeded", "failed", "no_match", "skipped", "dry_run"]);
  });
  await t.step("a list, in the status list's order, repeats once", () => {
    assertEquals(parseNotifyStates(" failed, succeeded,failed ,"), ["succeeded", "failed"]);
  });
  await t.step("a state that is not final, or not a state: a one-line error listing them", () => {
    for (const raw of ["pending", "in_progress", "Failed", "failed,oops\nx"]) {
      const err = assertThrows(() => parseNotifyStates(raw), {
        message: /expected a comma-separated list of succeeded, failed, no_match, skipped, dry_run/,
      });
      assert(!err.message.includes("\n"), err.message);
    }
  });
  await t.step("the final states are those summarizeStatus() calls final", () => {
    const at = (reports: ReturnType<typeof report>[], ms = 5000) =>
      summarizeStatus({
        id: "e",
        binding: BINDING,
        reports: new Map(reports.map((r) => [r.cluster, r])),
        now: T0 + ms,
        reportTimeoutMs: 30_000,
      });
    const seen = [
      at([]),
      at([report("east", { restarted: 1, progressing: 1 })]),
      at([report("east", { restarted: 1, complete: 1 }), report("west", {})]),
      at([report("east", { failed: 1 }), report("west", {})]),
      at([report("east", {}), report("west", {})]),
      at([report("east", {}), report("west", { skipped: 1 })]),
      at([report("east", { dry_run: 1 }), report("west", {})]),
    ];
    assertEquals(seen.map((s) => s.state).toSorted(), [...OVERALL_STATES].toSorted());
    for (const s of seen) assertEquals(FINAL_OVERALL_STATES.includes(s.state), s.final, s.state);
  });
});
