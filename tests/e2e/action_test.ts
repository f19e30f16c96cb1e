/**
 * Our GitHub Action (action.yml) end to end: its step runs here as GitHub's
 * runner would run it (tests/helpers/action_runner.ts: inputs and expressions
 * substituted, files for GITHUB_OUTPUT and GITHUB_STEP_SUMMARY, a loopback
 * stand-in for the runner's OIDC token service that mints tokens with the
 * test issuer) against the real web program and a real Valkey. Cluster
 * reports are written into Valkey in the worker's exact shape by a stand-in
 * (tests/helpers/stand_in_worker.ts); which outcome an event gets is chosen
 * by its tag. Every run's log, summary and outputs are also held to what the
 * Action promises about server text (tests/helpers/action_safety.ts; the
 * hostile server's side is tests/e2e/action_hostile_test.ts). Also: the
 * existing kuberollouttrigger-action's request still gets the 202 it reads.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { type ActionRun, runAction, startTokenService } from "../helpers/action_runner.ts";
import {
  assertLogInert,
  assertOutputsValid,
  assertSummaryInert,
} from "../helpers/action_safety.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import {
  clusterReport,
  type ReceivedEvent,
  type StandInWorker,
  startStandInWorker,
  type WriteReport,
} from "../helpers/stand_in_worker.ts";
import { startValkey, type TestValkey } from "../helpers/valkey.ts";
import type { EventStatus } from "../../shared/event_status.ts";
import { renderStatusMarkdown } from "../../tools/status_table.ts";

const CHANNEL = "krt-action-e2e";
const CLUSTERS = ["eu-1", "us-1"];

interface Env {
  issuer: TestIssuer;
  valkey: TestValkey;
  web: Program;
  url: string;
  worker?: StandInWorker;
}

function webEnv(issuer: TestIssuer, valkey: TestValkey): Record<string, string> {
  return {
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_OIDC_ISSUER: issuer.url,
    GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
    GITHUB_ALLOWED_ORG: "acme",
    GITHUB_ALLOWED_OWNER_IDS: "1001",
    LOG_LEVEL: "debug",
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const complete = (namespace: string, name: string, replicas = 2) => ({
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
const progressing = (namespace: string, name: string) => ({
  namespace,
  name,
  result: "restarted" as const,
  rollout: { state: "progressing" as const, replicas: 3, updated: 1, ready: 2, available: 2 },
});

/**
 * What the stand-in clusters report, by the event's first tag: first a
 * report still in progress (so the Action has to wait), then the outcome.
 */
async function answer(event: ReceivedEvent, write: WriteReport): Promise<void> {
  const scenario = event.tags[0];
  if (scenario === "nothing") {
    for (const cluster of CLUSTERS) await write(clusterReport(cluster, []));
    return;
  }
  if (scenario === "skipped") {
    // Every Deployment running the image was skipped; the other cluster runs none.
    const skipped = (name: string, reason: string) => ({
      namespace: "shop",
      name,
      result: "skipped" as const,
      reason,
    });
    await write(
      clusterReport("eu-1", [
        skipped("web", "paused"),
        skipped("api", "paused"),
        skipped("batch", "opted_out"),
      ]),
    );
    await write(clusterReport("us-1", []));
    return;
  }
  if (scenario === "dryrun") {
    // A DRY_RUN worker matched two Deployments and restarted neither.
    const dry = (name: string) => ({ namespace: "shop", name, result: "dry_run" as const });
    await write(clusterReport("eu-1", [dry("web"), dry("api")]));
    await write(clusterReport("us-1", []));
    return;
  }
  await write(clusterReport("eu-1", [progressing("shop", "web")]));
  if (scenario === "slow") return; // stays in progress
  await sleep(1500);
  if (scenario === "succeed") {
    await write(
      clusterReport("eu-1", [
        complete("shop", "web", 3),
        // Report text is untrusted: it must not change the table or add HTML.
        {
          namespace: "shop",
          name: "batch",
          result: "skipped",
          reason: "paused | <b>x</b>\nsecond line",
        },
      ], { omitted: 4, omittedRestarted: 4 }),
    );
    await write(clusterReport("us-1", [complete("shop", "web")]));
  } else if (scenario === "fail") {
    await write(
      clusterReport("eu-1", [{
        namespace: "shop",
        name: "web",
        result: "restarted",
        rollout: {
          state: "failed",
          reason: "ProgressDeadlineExceeded",
          replicas: 3,
          updated: 1,
          ready: 2,
          available: 1,
        },
      }]),
    );
    await write(
      clusterReport("us-1", [{
        namespace: "shop",
        name: "web",
        result: "failed",
        reason: "patch forbidden (403)",
      }]),
    );
  }
}

async function setUp(
  options: { worker?: boolean; env?: Record<string, string> } = {},
): Promise<Env> {
  const issuer = await startIssuer();
  const valkey = await startValkey();
  const worker = options.worker === false
    ? undefined
    : await startStandInWorker({ valkey, channel: CHANNEL, clusters: CLUSTERS, onEvent: answer });
  const { program, url } = await startWeb({ ...webEnv(issuer, valkey), ...options.env });
  return { issuer, valkey, web: program, url, worker };
}

async function tearDown(env: Env): Promise<void> {
  await env.worker?.stop();
  await env.web.stop();
  await env.valkey.stop();
  await env.issuer.stop();
}

/** Runs the Action against env's web with a fresh token service; returns the run and the tokens minted. */
async function run(
  env: Env,
  inputs: Record<string, string>,
  extraEnv: Record<string, string> = {},
) {
  const tokens = startTokenService(env.issuer, { audience: TEST_AUDIENCE });
  try {
    const result = await runAction({
      with: {
        url: `${env.url}/event`,
        audience: TEST_AUDIENCE,
        image: "ghcr.io/acme/app",
        timeout: "60s",
        ...inputs,
      },
      env: { ...tokens.env, ...extraEnv },
      killAfterMs: 120_000,
    });
    assertEquals(tokens.refused, [], "every token request carried the request token and audience");
    assertNoSecret(result, tokens.minted, tokens.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN);
    // Web's answers hold no marker here: these check the commands and shapes only.
    assertLogInert(result.stdout, { marker: "\u0000", minted: tokens.minted });
    if (result.summary !== "") assertSummaryInert(result.summary);
    assertOutputsValid(result.outputFile);
    return { result, minted: tokens.minted, queries: tokens.queries };
  } finally {
    await tokens.stop();
  }
}

/**
 * Security: no token (nor any of its three parts) appears in what the job
 * shows or keeps; the only lines naming one are the runner's `::add-mask::`
 * commands, which the runner consumes, and they mask exactly the tokens minted.
 */
function assertNoSecret(run: ActionRun, minted: string[], requestToken: string): void {
  const visible = run.stdout.split("\n").filter((l) => !l.startsWith("::add-mask::")).join("\n");
  const places: [string, string][] = [
    ["stdout", visible],
    ["stderr", run.stderr],
    ["GITHUB_OUTPUT", run.outputFile],
    ["job summary", run.summary],
  ];
  for (const [where, text] of places) {
    for (const token of minted) {
      for (const part of token.split(".")) {
        assert(!text.includes(part), `a token part appears in ${where}`);
      }
    }
    assert(!text.includes(requestToken), `the request token appears in ${where}`);
  }
  assert(!run.stdout.includes(requestToken), "the request token is never printed, not even masked");
  // Compared without printing: a failure message must not carry a token either.
  assert(
    run.masks.length === minted.length && minted.every((t) => run.masks.includes(t)),
    `each minted token is masked once (${run.masks.length} masks, ${minted.length} tokens)`,
  );
}

/** What a failed assertion may print of a run: the runner's mask commands without their tokens. */
function shown(run: ActionRun): string {
  return run.stdout.replace(/^::add-mask::.*$/gm, "::add-mask::***") + run.stderr;
}

/** The event's status as web answers it now (a fresh token, no wait). */
async function readStatus(env: Env, id: string): Promise<EventStatus> {
  const token = await env.issuer.sign();
  const res = await fetch(`${env.url}/event/${id}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assertEquals(res.status, 200);
  return await res.json();
}

Deno.test({
  name:
    "the Action follows a real web to each final state, with outputs, job summary and exit code",
  ignore: withoutValkey(),
  async fn(t) {
    const env = await setUp();
    try {
      await t.step(
        "succeeded: exit 0, outputs, and the summary table of both clusters",
        async () => {
          const { result, minted, queries } = await run(env, { tags: "succeed" });
          assertEquals(result.code, 0, shown(result));
          assertEquals(result.errors, []);
          const event = env.worker!.events.at(-1)!;
          assertEquals(result.outputs, {
            "event-id": event.id,
            state: "succeeded",
            restarted: "6",
          });
          const status = await readStatus(env, event.id);
          assertEquals(status.state, "succeeded");
          // The job summary is the table deno task trigger prints, from the same status.
          assertEquals(result.summary, renderStatusMarkdown(status) + "\n");
          assert(
            result.summary.includes(
              "| eu-1 | succeeded | shop/web | restarted | complete | 3/3 | 3/3 | 3/3 |  |",
            ),
            result.summary,
          );
          assert(result.summary.includes("| us-1 | succeeded | shop/web | restarted | complete |"));
          assert(result.summary.includes("| eu-1 | succeeded | … 4 more |"));
          // Security: report text cannot add a column or HTML.
          assert(
            result.summary.includes("| paused \\| &lt;b&gt;x&lt;/b&gt; second line |"),
            result.summary,
          );
          assert(result.stdout.includes(`Event ${event.id}: succeeded`));
          // One token for the POST and a fresh one per status read.
          assert(minted.length >= 2, `minted ${minted.length}`);
          assertEquals(new Set(minted).size, minted.length);
          // The audience is URL-encoded, as @actions/core sends it.
          assertEquals(
            queries[0],
            "?api-version=2.0&audience=https%3A%2F%2Fkuberollouttrigger.test",
          );
        },
      );

      await t.step("failed: exit 1, the failure named in the table and the error", async () => {
        const { result } = await run(env, { tags: "fail" });
        assertEquals(result.code, 1, shown(result));
        const event = env.worker!.events.at(-1)!;
        assertEquals(result.outputs, { "event-id": event.id, state: "failed", restarted: "1" });
        assertEquals(result.errors, [`Event ${event.id} failed: see the table in the job summary`]);
        assert(result.summary.startsWith("### kuberollouttrigger: failed\n"));
        assert(
          result.summary.includes(
            "| eu-1 | failed | shop/web | restarted | failed | 1/3 | 2/3 | 1/3 | ProgressDeadlineExceeded |",
          ),
          result.summary,
        );
        assert(
          result.summary.includes(
            "| us-1 | failed | shop/web | failed |  |  |  |  | patch forbidden \\(403\\) |",
          ),
        );
        assertEquals(result.summary, renderStatusMarkdown(await readStatus(env, event.id)) + "\n");
      });

      await t.step("no_match: exit 1 by default", async () => {
        const { result } = await run(env, { tags: "nothing" });
        assertEquals(result.code, 1, shown(result));
        const event = env.worker!.events.at(-1)!;
        assertEquals(result.outputs, { "event-id": event.id, state: "no_match", restarted: "0" });
        assertMatch(result.errors[0], /no cluster runs ghcr\.io\/acme\/app with tags nothing/);
        assert(
          result.summary.includes(
            "| eu-1 | no\\_match |  |  |  |  |  |  | nothing here runs the image |",
          ),
        );
      });

      await t.step("no_match: exit 0 with a warning under fail-on-no-match: false", async () => {
        const { result } = await run(env, { tags: "nothing", "fail-on-no-match": "false" });
        assertEquals(result.code, 0, shown(result));
        assertEquals(result.outputs.state, "no_match");
        assertEquals(result.errors, []);
        assertEquals(result.warnings.length, 1);
      });

      await t.step(
        "skipped: exit 1 with its own message, the reasons counted; 0 under fail-on-no-match: false",
        async () => {
          const { result } = await run(env, { tags: "skipped" });
          assertEquals(result.code, 1, shown(result));
          const event = env.worker!.events.at(-1)!;
          assertEquals(result.outputs, { "event-id": event.id, state: "skipped", restarted: "0" });
          assertEquals(result.errors, [
            `Event ${event.id}: every Deployment running ghcr.io/acme/app with tags skipped was skipped: 2 paused, 1 opted_out (set fail-on-no-match: false to accept this)`,
          ]);
          assert(!result.errors[0].includes("no cluster runs"), "not no_match's message");
          assert(
            result.summary.includes(
              "| eu-1 | skipped | shop/batch | skipped |  |  |  |  | opted\\_out |",
            ),
            result.summary,
          );
          assertEquals(
            result.summary,
            renderStatusMarkdown(await readStatus(env, event.id)) + "\n",
          );
          const lenient = await run(env, { tags: "skipped", "fail-on-no-match": "false" });
          assertEquals(lenient.result.code, 0, shown(lenient.result));
          assertEquals(lenient.result.errors, []);
          assertEquals(lenient.result.warnings.length, 1);
          assertMatch(lenient.result.warnings[0], /was skipped: 2 paused, 1 opted_out$/);
        },
      );

      await t.step(
        "dry_run: exit 1 by default, 0 with a warning under allow-dry-run: true",
        async () => {
          const { result } = await run(env, { tags: "dryrun" });
          assertEquals(result.code, 1, shown(result));
          const event = env.worker!.events.at(-1)!;
          assertEquals(result.outputs, { "event-id": event.id, state: "dry_run", restarted: "0" });
          assertEquals(result.errors, [
            `Event ${event.id} ended dry_run: the workers run with DRY_RUN, so 2 Deployments running ghcr.io/acme/app were matched and none was restarted (set allow-dry-run: true to accept this)`,
          ]);
          assert(
            result.summary.includes("| eu-1 | dry\\_run | shop/web | dry\\_run |"),
            result.summary,
          );
          // fail-on-no-match does not accept a dry run: only allow-dry-run does.
          const lenient = await run(env, { tags: "dryrun", "fail-on-no-match": "false" });
          assertEquals(lenient.result.code, 1, shown(lenient.result));
          const allowed = await run(env, { tags: "dryrun", "allow-dry-run": "true" });
          assertEquals(allowed.result.code, 0, shown(allowed.result));
          assertEquals(allowed.result.outputs.state, "dry_run");
          assertEquals(allowed.result.errors, []);
          assertMatch(allowed.result.warnings[0], /ended dry_run: .* none was restarted$/);
        },
      );

      await t.step(
        "a rollout still in progress at the timeout: exit 1, the last state kept",
        async () => {
          const { result } = await run(env, { tags: "slow", timeout: "8s" });
          assertEquals(result.code, 1, shown(result));
          const event = env.worker!.events.at(-1)!;
          assertEquals(result.outputs, {
            "event-id": event.id,
            state: "in_progress",
            restarted: "1",
          });
          assertEquals(result.errors, [`Event ${event.id} is still in_progress after timeout 8s`]);
          assert(
            result.summary.startsWith("### kuberollouttrigger: timed out while in\\_progress\n"),
          );
          assertEquals(
            result.summary,
            renderStatusMarkdown(await readStatus(env, event.id), { timedOut: true }) + "\n",
          );
        },
      );

      await t.step("wait: false passes on the 202 and reads no status", async () => {
        const before = env.worker!.events.length;
        const { result, minted } = await run(env, {
          tags: "succeed",
          wait: "false",
          // Empty optional inputs (an unset variable) mean their defaults.
          "timeout-seconds": "",
          "expand-versions": "",
        });
        assertEquals(result.code, 0, shown(result));
        const event = await env.worker!.event(before + 1);
        assertEquals(result.outputs, { "event-id": event.id, state: "", restarted: "" });
        assertEquals(minted.length, 1, "one token, for the POST");
        assertEquals(result.summary, "");
      });

      await t.step(
        "expand-versions sends vX, vX.Y and vX.Y.Z, as the existing action does",
        async () => {
          const before = env.worker!.events.length;
          const { result } = await run(env, {
            tags: "nothing, v1.2.3,,latest",
            "expand-versions": "true",
            "fail-on-no-match": "false",
          });
          assertEquals(result.code, 0, shown(result));
          const event = await env.worker!.event(before + 1);
          assertEquals(event.tags, ["nothing", "v1", "v1.2", "v1.2.3", "latest"]);
        },
      );
    } finally {
      await tearDown(env);
    }
  },
});

Deno.test({
  name:
    "the Action retries web's 503 after its Retry-After, with a fresh token, until a worker listens",
  ignore: withoutValkey(),
  async fn() {
    const env = await setUp({ worker: false });
    try {
      const running = run(env, { tags: "succeed" });
      // The first POST finds no subscriber (503, Retry-After: 5); then a worker starts.
      await env.web.waitForLog((l) => l.status === 503, 20_000);
      env.worker = await startStandInWorker({
        valkey: env.valkey,
        channel: CHANNEL,
        clusters: CLUSTERS,
        onEvent: answer,
      });
      const { result } = await running;
      assertEquals(result.code, 0, shown(result));
      assertMatch(
        result.stdout,
        /POST http:\/\/127\.0\.0\.1:\d+\/event answered 503 \(no worker cluster is registered; the event was not delivered\); retrying in 5s/,
      );
      assertEquals(result.outputs.state, "succeeded");
    } finally {
      await tearDown(env);
    }
  },
});

Deno.test({
  name: "the Action asks again after a status read's 429 (too many waiters) and its Retry-After",
  ignore: withoutValkey(),
  async fn() {
    const env = await setUp({ env: { STATUS_MAX_WAITERS: "1" } });
    try {
      // Another client holds web's only waiter slot on an event still in progress.
      const posted = await fetch(`${env.url}/event`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await env.issuer.sign()}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ image: "ghcr.io/acme/app", tags: ["slow"] }),
      });
      assertEquals(posted.status, 202);
      const held = (await posted.json()).id;
      await env.worker!.event(1);
      const holder = fetch(`${env.url}/event/${held}?wait=60`, {
        headers: { authorization: `Bearer ${await env.issuer.sign()}` },
      }).then((r) => r.json());
      for (let tries = 0;; tries++) {
        const metrics = await (await fetch(`${env.url}/metrics`)).text();
        if (/^kuberollouttrigger_status_waiters 1$/m.test(metrics)) break;
        assert(tries < 200, "the holder took the waiter slot within 10 s");
        await sleep(50);
      }
      const running = run(env, { tags: "succeed" });
      await env.web.waitForLog((l) => l.reason === "too_many_waiters", 30_000);
      // The held event ends; its waiter leaves, and the Action's next read gets the slot.
      await env.worker!.write(held, clusterReport("eu-1", [complete("shop", "web")]));
      await env.worker!.write(held, clusterReport("us-1", [complete("shop", "web")]));
      assertEquals((await holder).state, "succeeded");
      const { result } = await running;
      assertEquals(result.code, 0, shown(result));
      assertMatch(
        result.stdout,
        /answered 429 \(too many requests are waiting; retry shortly\); asking again in 5s/,
      );
      assertEquals(result.outputs.state, "succeeded");
    } finally {
      await tearDown(env);
    }
  },
});

Deno.test({
  name:
    "security: the Action never shows the token, even with tracing forced on (SHELLOPTS=xtrace)",
  ignore: withoutValkey(),
  async fn() {
    const env = await setUp();
    try {
      const { result, minted } = await run(env, { tags: "succeed" }, { SHELLOPTS: "xtrace" });
      assertEquals(result.code, 0, shown(result));
      assert(result.stderr.includes("+ set +x"), "tracing was on when the script started");
      assert(minted.length >= 2);
      // assertNoSecret (inside run) has checked stdout, stderr, outputs and summary.
    } finally {
      await tearDown(env);
    }
  },
});

Deno.test("security: the Action refuses plain http to another host before it requests a token", async () => {
  const issuer = await startIssuer();
  const tokens = startTokenService(issuer, { audience: TEST_AUDIENCE });
  try {
    const result = await runAction({
      with: {
        url: "http://rollouts.example.com/event",
        audience: TEST_AUDIENCE,
        image: "ghcr.io/acme/app",
        tags: "dev",
      },
      env: tokens.env,
    });
    assertEquals(result.code, 1);
    assertEquals(result.errors, [
      'Input url "http://rollouts.example.com/event" must start with https:// (plain http is allowed for localhost only)',
    ]);
    assertEquals(tokens.minted, []);
    assertEquals(tokens.queries, [], "no token was requested");
  } finally {
    await tokens.stop();
    await issuer.stop();
  }
});

Deno.test("the Action checks its inputs before it requests a token, and says when none is given", async (t) => {
  const issuer = await startIssuer();
  const tokens = startTokenService(issuer, { audience: TEST_AUDIENCE });
  const base = {
    url: "https://rollouts.example.com/event",
    audience: TEST_AUDIENCE,
    image: "ghcr.io/acme/app",
    tags: "dev",
  };
  const cases: [string, Record<string, string>, string][] = [
    ["no tags", { tags: " , " }, "Input tags must contain at least one non-empty tag"],
    ["no image", { image: "" }, "Input image is required"],
    [
      "a timeout that is not a duration",
      { timeout: "10" },
      'Input timeout "10" must be a duration such as 90s, 10m or 1h',
    ],
    [
      "a zero timeout-seconds",
      { "timeout-seconds": "0" },
      'Input timeout-seconds "0" must be a positive number of seconds',
    ],
    ["a wait that is not a boolean", { wait: "yes" }, 'Input wait "yes" must be true or false'],
  ];
  try {
    for (const [name, inputs, error] of cases) {
      await t.step(name, async () => {
        const result = await runAction({ with: { ...base, ...inputs }, env: tokens.env });
        assertEquals(result.code, 1);
        assertEquals(result.errors, [error]);
      });
    }
    await t.step("no id-token permission: says what to add", async () => {
      const result = await runAction({ with: base, env: {} });
      assertEquals(result.code, 1);
      assertEquals(result.errors, [
        'No OIDC token is available to this job: add "permissions: id-token: write" to the job or workflow',
      ]);
    });
    assertEquals(tokens.queries, [], "no token was requested");
    await t.step("a token service that refuses: the step fails with its answer", async () => {
      const wrong = { ...tokens.env, ACTIONS_ID_TOKEN_REQUEST_TOKEN: "not-the-request-token" };
      const result = await runAction({ with: base, env: wrong });
      assertEquals(result.code, 1);
      assertEquals(result.errors, [
        'Cannot get an OIDC token from ACTIONS_ID_TOKEN_REQUEST_URL (answer 401): does the job have "permissions: id-token: write"?',
      ]);
      assertEquals(tokens.refused, ["wrong request token"]);
      const other = await runAction({
        with: { ...base, audience: "https://other.test" },
        env: tokens.env,
      });
      assertEquals(other.code, 1);
      assertMatch(other.errors[0], /^Cannot get an OIDC token .*\(answer 400\)/);
      assertEquals(tokens.refused, ["wrong request token", 'audience ["https://other.test"]']);
      assert(!shown(result).includes("not-the-request-token"), "the request token is not printed");
    });
  } finally {
    await tokens.stop();
    await issuer.stop();
  }
});

Deno.test({
  name: "the existing kuberollouttrigger-action's request still gets 202 with the fields it reads",
  ignore: withoutValkey(),
  async fn() {
    const env = await setUp();
    try {
      // What its src/main.ts sends through @actions/http-client: POST, its
      // user agent, the Bearer token and JSON content type, the tags form.
      const token = await env.issuer.sign();
      const res = await fetch(`${env.url}/event`, {
        method: "POST",
        headers: {
          "user-agent": "kuberollouttrigger-action",
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({
          image: "ghcr.io/acme/app",
          tags: ["nothing", "v1", "v1.2", "v1.2.3"],
        }),
      });
      // It reads the status code (2xx passes) and prints the body.
      assertEquals(res.status, 202);
      const body = await res.json();
      assertMatch(body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assertEquals(body.subscribers, 1);
      assertEquals(
        Object.keys(body).slice(0, 2),
        ["id", "subscribers"],
        "old fields first, unchanged",
      );
      const event = await env.worker!.event(1);
      assertEquals(event.id, body.id);
    } finally {
      await tearDown(env);
    }
  },
});
