/**
 * `deno task trigger --wait` against the real web in dev mode (as `deno task
 * dev` starts it) and a real Valkey, with cluster reports written by the
 * stand-in worker (tests/helpers/stand_in_worker.ts): the exit code for each
 * final state, the table it prints, and its usage errors. Plus the pure
 * decisions it shares with the Action (exit codes, Retry-After).
 */

import { assert, assertEquals, assertMatch } from "../../helpers/assert.ts";
import { runTriggerTask } from "../../helpers/trigger_task.ts";
import { startWeb } from "../../helpers/program.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import {
  clusterReport,
  type ReceivedEvent,
  startStandInWorker,
  type WriteReport,
} from "../../helpers/stand_in_worker.ts";
import { startValkey } from "../../helpers/valkey.ts";
import type { EventStatus } from "../../../shared/event_status.ts";
import { DEV_DEFAULTS } from "../../../tools/dev.ts";
import { renderStatusText } from "../../../tools/status_table.ts";
import {
  exitCodeFor,
  type ExitOptions,
  mintDevToken,
  progressLine,
  readStatus,
  retryDelayMs,
  verdict,
} from "../../../tools/trigger.ts";

Deno.test("exitCodeFor() maps each way a wait ends to the documented exit code", async (t) => {
  const status = (state: EventStatus["state"]) => ({ state } as EventStatus);
  const lenient: ExitOptions = { failOnNoMatch: false };
  const cases: [string, Parameters<typeof exitCodeFor>[0], ExitOptions, number][] = [
    ["succeeded", { status: status("succeeded"), timedOut: false }, {}, 0],
    ["failed", { status: status("failed"), timedOut: false }, {}, 1],
    ["no_match", { status: status("no_match"), timedOut: false }, {}, 1],
    [
      "no_match, --no-fail-on-no-match",
      { status: status("no_match"), timedOut: false },
      lenient,
      0,
    ],
    ["skipped", { status: status("skipped"), timedOut: false }, {}, 1],
    ["skipped, --no-fail-on-no-match", { status: status("skipped"), timedOut: false }, lenient, 0],
    ["dry_run", { status: status("dry_run"), timedOut: false }, {}, 1],
    ["dry_run, --no-fail-on-no-match", { status: status("dry_run"), timedOut: false }, lenient, 1],
    ["dry_run, --allow-dry-run", { status: status("dry_run"), timedOut: false }, {
      allowDryRun: true,
    }, 0],
    ["a final pending", { status: status("pending"), timedOut: false }, lenient, 1],
    ["a timeout", { status: status("in_progress"), timedOut: true }, lenient, 1],
    ["a timeout before any status", { timedOut: true }, {}, 1],
  ];
  for (const [name, result, options, code] of cases) {
    await t.step(name, () => assertEquals(exitCodeFor(result, options), code));
  }
});

Deno.test("verdict() says skipped and dry_run in their own words, as the Action does", () => {
  const skipped = {
    state: "skipped",
    clusters: [{
      cluster: "eu-1",
      state: "skipped",
      matched: 3,
      counts: { skipped: 3 },
      deployments: [
        { namespace: "shop", name: "a", result: "skipped", reason: "paused" },
        { namespace: "shop", name: "b", result: "skipped", reason: "paused" },
        { namespace: "shop", name: "c", result: "skipped", reason: "opted_out" },
      ],
      omitted: 0,
    }],
  } as unknown as EventStatus;
  assertEquals(
    verdict("e1", { status: skipped, timedOut: false }),
    "event e1 ended skipped: every Deployment running the image was skipped: 2 paused, 1 opted_out (--no-fail-on-no-match accepts this)",
  );
  const dry = {
    state: "dry_run",
    clusters: [{ cluster: "eu-1", state: "dry_run", counts: { dry_run: 2 }, deployments: [] }],
  } as unknown as EventStatus;
  assertEquals(
    verdict("e1", { status: dry, timedOut: false }),
    "event e1 ended dry_run: the workers run with DRY_RUN, so 2 Deployments were matched and none was restarted (--allow-dry-run accepts this)",
  );
  assertEquals(verdict("e1", { status: dry, timedOut: false }, { allowDryRun: true }), undefined);
});

Deno.test("security: readStatus() refuses what the Action refuses; progressLine() is inert", async (t) => {
  const body = (patch: Record<string, unknown>) =>
    JSON.stringify({
      id: "e1",
      state: "succeeded",
      final: true,
      image: "ghcr.io/acme/app",
      tags: ["dev"],
      clusters: [{
        cluster: "eu-1",
        state: "succeeded",
        counts: { restarted: 1 },
        deployments: [],
      }],
      ...patch,
    });
  for (const state of ["skipped", "dry_run", "pending"]) {
    await t.step(
      `state ${state} is read`,
      () => assertEquals(readStatus(body({ state })).state, state),
    );
  }
  const refused: [string, Record<string, unknown>][] = [
    ["an unknown state", { state: "done" }],
    ["a count that is a string", { clusters: [{ counts: { restarted: "1\nstate=x" } }] }],
    ["a negative count", { clusters: [{ counts: { restarted: -1 } }] }],
    ["a huge count", { clusters: [{ counts: { restarted: 1e15 } }] }],
    ["a cluster that is not an object", { clusters: ["eu-1"] }],
    ["deployments that are not a list", { clusters: [{ deployments: { a: 1 } }] }],
    ["a rollout that is not an object", { clusters: [{ deployments: [{ rollout: "x" }] }] }],
  ];
  for (const [name, patch] of refused) {
    await t.step(`${name} is refused`, () => {
      let error: unknown;
      try {
        readStatus(body(patch));
      } catch (err) {
        error = err;
      }
      assertMatch(String(error), /not an event status/);
    });
  }
  const line = progressLine(
    readStatus(body({ clusters: [{ cluster: "\u001b[31meu-1\n", state: { x: 1 } }] })),
  );
  assertEquals(line, "Event e1: succeeded ( [31meu-1 : ?)");
});

Deno.test("retryDelayMs() honours Retry-After seconds within 1..60, else the fallback", () => {
  assertEquals(retryDelayMs("5", 2000), 5000);
  assertEquals(retryDelayMs("0", 2000), 1000);
  assertEquals(retryDelayMs("3600", 2000), 60_000);
  assertEquals(retryDelayMs("Wed, 21 Oct 2026 07:28:00 GMT", 2000), 2000);
  assertEquals(retryDelayMs(null, 2000), 2000);
});

const done = (namespace: string, name: string) => ({
  namespace,
  name,
  result: "restarted" as const,
  rollout: { state: "complete" as const, replicas: 2, updated: 2, ready: 2, available: 2 },
});

async function answer(event: ReceivedEvent, write: WriteReport): Promise<void> {
  const tag = event.tags[0];
  if (tag === "nothing") return await write(clusterReport("local", []));
  await write(clusterReport("local", [{
    namespace: "apps",
    name: "web",
    result: "restarted",
    rollout: { state: "progressing", replicas: 2, updated: 1, ready: 1, available: 1 },
  }]));
  if (tag === "slow") return;
  await new Promise((r) => setTimeout(r, 1000));
  if (tag === "fail") {
    await write(clusterReport("local", [{
      namespace: "apps",
      name: "web",
      result: "restarted",
      rollout: {
        state: "timed_out",
        reason: "rollout not complete after 10m",
        replicas: 2,
        updated: 1,
        ready: 1,
        available: 1,
      },
    }]));
  } else {
    await write(clusterReport("local", [done("apps", "web"), done("apps", "api")]));
  }
}

Deno.test({
  name: "deno task trigger --wait follows a real dev-mode web to each final state",
  ignore: withoutValkey(),
  async fn(t) {
    const valkey = await startValkey();
    const worker = await startStandInWorker({
      valkey,
      channel: DEV_DEFAULTS.VALKEY_CHANNEL,
      clusters: ["local"],
      onEvent: answer,
    });
    const { program, url } = await startWeb({ ...DEV_DEFAULTS, VALKEY_ADDR: valkey.addr }, [
      "--dev-mode",
    ]);
    const statusOf = async (id: string): Promise<EventStatus> => {
      const res = await fetch(`${url}/event/${id}`, {
        headers: { authorization: `Bearer ${await mintDevToken(url)}` },
      });
      assertEquals(res.status, 200);
      return await res.json();
    };
    try {
      await t.step("succeeded: exit 0 and the Action's table", async () => {
        const run = await runTriggerTask(["ghcr.io/acme/app:dev", "--url", url, "--wait"]);
        assertEquals(run.code, 0, run.stdout + run.stderr);
        const event = worker.events.at(-1)!;
        assertMatch(run.stdout, new RegExp(`^202 \\{"id":"${event.id}"`));
        assert(run.stderr.includes(`Event ${event.id}: succeeded (local: succeeded)`), run.stderr);
        const table = renderStatusText(await statusOf(event.id));
        assert(run.stdout.endsWith(`\n${table}`), run.stdout);
        assertMatch(table, /local +succeeded +apps\/web +restarted +complete +2\/2 +2\/2 +2\/2/);
      });
      await t.step("failed: exit 1, the reason in the table", async () => {
        const run = await runTriggerTask(["ghcr.io/acme/app:fail", "--url", url, "--wait"]);
        assertEquals(run.code, 1, run.stdout + run.stderr);
        const event = worker.events.at(-1)!;
        assertMatch(run.stdout, /timed_out +1\/2 +1\/2 +1\/2 +rollout not complete after 10m/);
        assert(
          run.stderr.endsWith(`deno task trigger: event ${event.id} ended failed\n`),
          run.stderr,
        );
      });
      await t.step("no_match: exit 1, and 0 with --no-fail-on-no-match", async () => {
        const strict = await runTriggerTask(["ghcr.io/acme/app:nothing", "--url", url, "--wait"]);
        assertEquals(strict.code, 1, strict.stdout + strict.stderr);
        assertMatch(strict.stderr, /ended no_match \(--no-fail-on-no-match accepts this\)\n$/);
        const lenient = await runTriggerTask([
          "ghcr.io/acme/app:nothing",
          "--url",
          url,
          "--wait",
          "--no-fail-on-no-match",
        ]);
        assertEquals(lenient.code, 0, lenient.stdout + lenient.stderr);
        assertMatch(lenient.stdout, /local +no_match +nothing here runs the image/);
      });
      await t.step("a rollout still in progress at --timeout: exit 1", async () => {
        const run = await runTriggerTask([
          "ghcr.io/acme/app:slow",
          "--url",
          url,
          "--wait",
          "--timeout",
          "6s",
        ]);
        assertEquals(run.code, 1, run.stdout + run.stderr);
        const event = worker.events.at(-1)!;
        assertMatch(run.stdout, /kuberollouttrigger: timed out while in_progress/);
        assert(
          run.stderr.endsWith(
            `deno task trigger: event ${event.id} is still in_progress after --timeout 6s\n`,
          ),
          run.stderr,
        );
      });
      await t.step("without --wait: 202 is success, as before", async () => {
        const run = await runTriggerTask(["ghcr.io/acme/app:slow", "--url", url]);
        assertEquals(run.code, 0, run.stdout + run.stderr);
        assertMatch(run.stdout, /^202 \{"id":"[0-9a-f-]{36}","subscribers":1/);
        assert(!run.stdout.includes("kuberollouttrigger:"), "no table without --wait");
      });
    } finally {
      await program.stop();
      await worker.stop();
      await valkey.stop();
    }
  },
});

Deno.test("deno task trigger: a usage error exits 2 and says what is wrong", async (t) => {
  await t.step("a --timeout that is not a duration", async () => {
    const run = await runTriggerTask(["ghcr.io/acme/app:dev", "--wait", "--timeout", "10"]);
    assertEquals(run.code, 2);
    assert(
      run.stderr.startsWith(
        'deno task trigger: --timeout "10": expected a duration such as 5s or 10m\nusage: deno task trigger <image[:tag]>',
      ),
      run.stderr,
    );
  });
  await t.step("an unknown flag", async () => {
    const run = await runTriggerTask(["ghcr.io/acme/app:dev", "--wiat"]);
    assertEquals(run.code, 2);
    assertMatch(run.stderr, /^deno task trigger: Unknown option '--wiat'/);
  });
  await t.step("no image", async () => {
    const run = await runTriggerTask(["--wait"]);
    assertEquals(run.code, 2);
    assertMatch(run.stderr, /^usage: deno task trigger/);
  });
});
