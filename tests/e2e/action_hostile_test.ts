/**
 * security: our GitHub Action (action.yml) against a hostile server. A
 * loopback server stands where web would, and answers the Action's POST and
 * status reads with bodies no web writes: workflow commands in every string
 * (`::add-mask::`, `##[stop-commands]`, `::set-output`, `::error::` after a
 * newline, `%0A`-encoded ones), Markdown and HTML (images, links, bare URLs,
 * headings, tags), counts that are not counts, huge strings and too many
 * rows. The Action runs as GitHub's runner runs it
 * (tests/helpers/action_runner.ts); its log is then read with the runner's
 * own rules for workflow commands (tests/helpers/runner_log.ts), and its
 * summary and outputs are checked (tests/helpers/action_safety.ts). The
 * server and its scripts are tests/helpers/hostile_server.ts; every hostile
 * string holds its marker, so server text can be found wherever it lands.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { type ActionRun, runAction, startTokenService } from "../helpers/action_runner.ts";
import {
  assertLogInert,
  assertOutputsValid,
  assertSummaryInert,
} from "../helpers/action_safety.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import {
  type HostileServer,
  MARKER,
  NOT_COUNTS,
  startHostileServer,
} from "../helpers/hostile_server.ts";
import type { EventStatus } from "../../shared/event_status.ts";
import { renderStatusMarkdown } from "../../tools/status_table.ts";

/** Shown when an assertion fails: the log without the mask lines' tokens. */
function shownRun(run: ActionRun): string {
  return (run.stdout.replace(/^::add-mask::.*$/gm, "::add-mask::***") + run.stderr).slice(-4000);
}

async function hostileRun(
  issuer: TestIssuer,
  server: HostileServer,
  scenario: string,
  inputs: Record<string, string> = {},
): Promise<ActionRun> {
  const tokens = startTokenService(issuer, { audience: TEST_AUDIENCE });
  try {
    const run = await runAction({
      with: {
        url: `${server.url}/event`,
        audience: TEST_AUDIENCE,
        image: "ghcr.io/acme/app",
        tags: scenario,
        timeout: "60s",
        ...inputs,
      },
      env: tokens.env,
      killAfterMs: 90_000,
    });
    assertLogInert(run.stdout, { marker: MARKER, minted: tokens.minted });
    // The runner reads stderr for commands too; the Action prints no server text there.
    assert(!run.stderr.includes(MARKER), `server text on stderr: ${run.stderr.slice(0, 500)}`);
    assertLogInert(run.stderr, { marker: MARKER, minted: [], where: "stderr" });
    if (run.summary !== "") assertSummaryInert(run.summary);
    assertOutputsValid(run.outputFile);
    return run;
  } finally {
    await tokens.stop();
  }
}

Deno.test("security: the Action keeps a hostile server's text out of commands, Markdown and outputs", async (t) => {
  const issuer = await startIssuer();
  const server = startHostileServer();
  try {
    await t.step(
      "hostile strings in every field: the step follows the state, nothing else",
      async () => {
        const run = await hostileRun(issuer, server, "strings");
        assertEquals(run.code, 0, shownRun(run));
        const outputs = assertOutputsValid(run.outputFile);
        assertEquals(outputs.state, "succeeded");
        assertEquals(outputs.restarted, "3");
        // The progress line and the table reached the log, inert.
        assertMatch(run.stdout, /^Event [0-9a-f-]{36}: in_progress \(/m);
        assert(run.stdout.includes("#\\[stop-commands]EVILTOKEN"), "##[ is shown as #\\[");
        // The summary is status_table.ts's rendering of the same body, byte for byte.
        const body = JSON.parse(server.served.get(outputs["event-id"])!) as EventStatus;
        assertEquals(run.summary, renderStatusMarkdown(body) + "\n");
        assert(run.summary.includes("\\!\\[EVIL\\]\\(https:\u200b//evil.example/p.png\\)"));
        assert(run.summary.includes("&lt;img src=x onerror=alert\\(1\\)&gt; EVIL"));
        assert(run.summary.includes("| ?/? |"), "numbers that are not counts show as ?");
        assert(run.summary.includes("| baking |"), "a baking rollout is shown as such");
        assertEquals(run.errors, []);
      },
    );

    await t.step("every match skipped: its own failure, the reasons inert", async () => {
      const run = await hostileRun(issuer, server, "skipped");
      assertEquals(run.code, 1, shownRun(run));
      assertEquals(assertOutputsValid(run.outputFile).state, "skipped");
      assertEquals(run.errors.length, 1);
      assertMatch(
        run.errors[0],
        /^Event [0-9a-f-]{36}: every Deployment running ghcr\.io\/acme\/app with tags skipped was skipped: \d+ .*EVIL.* \(set fail-on-no-match: false to accept this\)$/,
      );
      const lenient = await hostileRun(issuer, server, "skipped", { "fail-on-no-match": "false" });
      assertEquals(lenient.code, 0, shownRun(lenient));
      assertEquals(lenient.warnings.length, 1);
    });

    await t.step("the server's error texts, in retries and in the failure", async () => {
      const run = await hostileRun(issuer, server, "errors");
      assertEquals(run.code, 1, shownRun(run));
      assertMatch(run.stdout, /answered 503 \(.*EVIL.*\); retrying in 1s/);
      assertMatch(run.stdout, /answered 503 \(.*EVIL.*\); asking again in 5s/);
      assertMatch(run.stdout, /answered 500 \(.*EVIL.*\); asking again in 2s/);
      assertEquals(run.errors.length, 1);
      assertMatch(
        run.errors[0],
        /^GET http:\/\/127\.0\.0\.1:\d+\/event\/[0-9a-f-]{36} answered 418: .*EVIL/,
      );
      assert(!run.errors[0].includes("##["), "no legacy command in the annotation");
      assertEquals(Object.keys(assertOutputsValid(run.outputFile)), ["event-id"]);
    });

    await t.step("a final state that is not a result fails the step", async () => {
      const run = await hostileRun(issuer, server, "pending");
      assertEquals(run.code, 1, shownRun(run));
      assertMatch(run.errors[0], /ended pending, which is not a result/);
    });

    await t.step(
      "a huge reason and 400 rows: cells cut, rows capped, summary bounded",
      async () => {
        const run = await hostileRun(issuer, server, "huge");
        assertEquals(run.code, 1, shownRun(run));
        // 400 named, one for those only counted, two clusters without any.
        assertMatch(run.summary, /\n\n… 103 more rows not shown\n/);
        const longest = Math.max(...run.stdout.split("\n").map((l) => l.length));
        assert(longest < 10 * 1024, `log lines stay short (${longest})`);
      },
    );

    for (const value of [...NOT_COUNTS, "1e15", '"1\\nrestarted<<EOF"']) {
      await t.step(`a count of ${value} is refused, and no output is corrupted`, async () => {
        const run = await hostileRun(issuer, server, `counts.${value}`);
        assertEquals(run.code, 1, shownRun(run));
        assertMatch(run.errors[0], /answered 200 with a body that is not an event status$/);
        assertEquals(Object.keys(assertOutputsValid(run.outputFile)), ["event-id"]);
      });
    }
  } finally {
    await server.stop();
    await issuer.stop();
  }
});
