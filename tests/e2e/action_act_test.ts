/**
 * Our GitHub Action (action.yml) under nektos/act, a runner implementation
 * nobody here wrote (tests/helpers/act.ts): a workflow that `uses:` the
 * action, run by act's host executor against the real web program, a real
 * Valkey and the stand-in worker clusters (tests/helpers/stand_in_worker.ts).
 * What act proves that tests/helpers/action_runner.ts cannot: the metadata
 * is read by someone else's parser (inputs, defaults, the `env:` expressions,
 * outputs mapped from the step), the token request works from the
 * environment a runner gives, the outputs reach the next step, the summary
 * reaches the runner, and act's own workflow-command parser processes only
 * the Action's commands. Under CI=true a missing Go (to build act) fails the
 * run (tests/helpers/skip.ts); it is never skipped quietly.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { type ActRun, locateAct, runActWorkflow } from "../helpers/act.ts";
import { startTokenService } from "../helpers/action_runner.ts";
import {
  assertLogInert,
  assertOutputsValid,
  assertSummaryInert,
} from "../helpers/action_safety.ts";
import { startIssuer, TEST_AUDIENCE } from "../helpers/issuer.ts";
import { MARKER, startHostileServer } from "../helpers/hostile_server.ts";
import { startWeb } from "../helpers/program.ts";
import { NO_SERVERS, withoutValkey } from "../helpers/skip.ts";
import {
  clusterReport,
  type ReceivedEvent,
  startStandInWorker,
  type WriteReport,
} from "../helpers/stand_in_worker.ts";
import { startValkey } from "../helpers/valkey.ts";
import type { EventStatus } from "../../shared/event_status.ts";
import { renderStatusMarkdown } from "../../tools/status_table.ts";

const CHANNEL = "krt-action-act";
const CLUSTERS = ["eu-1", "us-1"];
const act = NO_SERVERS ? undefined : await locateAct();

const done = (namespace: string, name: string, replicas = 2) => ({
  namespace,
  name,
  result: "restarted" as const,
  rollout: {
    state: "complete" as const,
    replicas,
    updated: replicas,
    ready: replicas,
    available: replicas,
  },
});

/** In progress first (the Action has to wait), then the outcome its first tag names. */
async function answer(event: ReceivedEvent, write: WriteReport): Promise<void> {
  if (event.tags[0] === "nothing") {
    for (const cluster of CLUSTERS) await write(clusterReport(cluster, []));
    return;
  }
  await write(clusterReport("eu-1", [{
    namespace: "shop",
    name: "web",
    result: "restarted",
    rollout: { state: "baking", replicas: 3, updated: 3, ready: 3, available: 3 },
  }]));
  await new Promise((r) => setTimeout(r, 1500));
  await write(clusterReport("eu-1", [done("shop", "web", 3), done("shop", "api")]));
  await write(clusterReport("us-1", [done("shop", "web")]));
}

/** What act processed as workflow commands in the action's step, by kind. */
function processed(run: ActRun): string[] {
  // set-output entries are act reading GITHUB_OUTPUT, not log lines.
  return run.commands.filter((c) => c.command !== "set-output").map((c) =>
    /^[0-9a-f]{32}$/.test(c.command) ? "resume" : c.command
  );
}

Deno.test({
  name: "the Action under nektos/act: token, wait, outputs and summary against a real web",
  ignore: withoutValkey() || act === undefined,
  async fn(t) {
    const issuer = await startIssuer();
    const valkey = await startValkey();
    const worker = await startStandInWorker({
      valkey,
      channel: CHANNEL,
      clusters: CLUSTERS,
      onEvent: answer,
    });
    const { program: web, url } = await startWeb({
      VALKEY_ADDR: valkey.addr,
      VALKEY_CHANNEL: CHANNEL,
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      GITHUB_OIDC_ISSUER: issuer.url,
      GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
      GITHUB_ALLOWED_ORG: "acme",
      GITHUB_ALLOWED_OWNER_IDS: "1001",
    });
    const tokens = startTokenService(issuer, { audience: TEST_AUDIENCE });
    const runAct = (tags: string, extra: Record<string, string> = {}) =>
      runActWorkflow({
        act: act!,
        with: {
          url: `${url}/event`,
          audience: TEST_AUDIENCE,
          image: "ghcr.io/acme/app",
          tags,
          timeout: "60s",
          ...extra,
        },
        env: tokens.env,
        killAfterMs: 120_000,
      });
    const statusOf = async (id: string): Promise<EventStatus> => {
      const res = await fetch(`${url}/event/${id}`, {
        headers: { authorization: `Bearer ${await issuer.sign()}` },
      });
      assertEquals(res.status, 200);
      return await res.json();
    };
    try {
      await t.step("succeeded: the job passes, the next step reads the three outputs", async () => {
        const before = tokens.minted.length;
        const run = await runAct("succeed");
        assertEquals(run.jobResult, "success", run.shown);
        assertEquals(run.code, 0, run.shown);
        const event = worker.events.at(-1)!;
        assertEquals(run.outputs, { "event-id": event.id, state: "succeeded", restarted: "3" });
        // One token for the POST, a fresh one per status read; each masked by act.
        const minted = tokens.minted.slice(before);
        assert(minted.length >= 2, `minted ${minted.length}`);
        // What act shows (its --json `msg`; `raw` keeps the line it parsed, mask included).
        const shownByAct = run.entries.map((e) => e.msg ?? "").join("\n");
        for (const token of minted) {
          for (const part of token.split(".")) {
            assert(!shownByAct.includes(part), "a token in act's log");
          }
        }
        assertEquals(tokens.refused, []);
        // The summary act collected is the table deno task trigger prints.
        assertEquals(run.summary, renderStatusMarkdown(await statusOf(event.id)) + "\n");
        assertSummaryInert(run.summary);
        assertMatch(
          run.shown,
          new RegExp(`^Event ${event.id}: succeeded \\(eu-1: succeeded, us-1: succeeded\\)$`, "m"),
        );
        assertLogInert(run.log, { marker: "\u0000", minted });
        // act's own parser processed the Action's commands only, and resumed each block.
        const kinds = processed(run);
        assert(kinds.every((k) => ["add-mask", "stop-commands", "resume"].includes(k)), `${kinds}`);
        assertEquals(
          kinds.filter((k) => k === "stop-commands").length,
          kinds.filter((k) => k === "resume").length,
        );
      });

      await t.step(
        "no_match: the job fails with the Action's error, outputs still set",
        async () => {
          const run = await runAct("nothing");
          assertEquals(run.jobResult, "failure", run.shown);
          const event = worker.events.at(-1)!;
          assertEquals(run.outputs, { "event-id": event.id, state: "no_match", restarted: "0" });
          const errors = run.commands.filter((c) => c.command === "error");
          assertEquals(errors.length, 1);
          assertMatch(errors[0].arg, /no cluster runs ghcr\.io\/acme\/app with tags nothing/);
          assertLogInert(run.log, { marker: "\u0000", minted: tokens.minted });
        },
      );

      await t.step("the Action's defaults, as act reads them from action.yml", async () => {
        // No timeout given: the default (15m) applies; wait: false ends at the 202.
        const run = await runActWorkflow({
          act: act!,
          with: {
            url: `${url}/event`,
            audience: TEST_AUDIENCE,
            image: "ghcr.io/acme/app",
            tags: "nothing",
            wait: "false",
          },
          env: tokens.env,
          killAfterMs: 120_000,
        });
        assertEquals(run.jobResult, "success", run.shown);
        assertOutputsValid(`event-id=${run.outputs["event-id"]}\n`);
        assertEquals([run.outputs.state, run.outputs.restarted], ["", ""]);
      });

      await t.step(
        "security: a hostile server's text is no command to act's parser either",
        async () => {
          const hostile = startHostileServer();
          try {
            for (const [tags, jobResult] of [["strings", "success"], ["errors", "failure"]]) {
              const before = tokens.minted.length;
              const run = await runActWorkflow({
                act: act!,
                with: {
                  url: `${hostile.url}/event`,
                  audience: TEST_AUDIENCE,
                  image: "ghcr.io/acme/app",
                  tags,
                  timeout: "60s",
                },
                env: tokens.env,
                killAfterMs: 120_000,
              });
              assertEquals(run.jobResult, jobResult, run.shown);
              // act reads commands only at a line's start and honours stop-commands;
              // whatever it read inside a block it logs as `ignored`.
              const kinds = processed(run);
              assert(
                kinds.every((k) =>
                  ["add-mask", "stop-commands", "resume", "ignored", "error"]
                    .includes(k)
                ),
                `${kinds}`,
              );
              for (const c of run.commands.filter((c) => c.command === "add-mask")) {
                assert(tokens.minted.slice(before).includes(c.arg), "only the tokens are masked");
              }
              for (const c of run.commands.filter((c) => c.command === "error")) {
                assert(c.raw.startsWith("::error::"), "the Action's own annotation");
              }
              assertLogInert(run.log, { marker: MARKER, minted: tokens.minted.slice(before) });
              if (run.summary !== "") assertSummaryInert(run.summary);
              if (tags === "strings") {
                assertEquals([run.outputs.state, run.outputs.restarted], ["succeeded", "3"]);
              } else {
                assertEquals([run.outputs.state, run.outputs.restarted], ["", ""]);
              }
            }
          } finally {
            await hostile.stop();
          }
        },
      );
    } finally {
      await tokens.stop();
      await web.stop();
      await worker.stop();
      await valkey.stop();
      await issuer.stop();
    }
  },
});
