/**
 * `deno task trigger --wait` against the real web in dev mode (as `deno task
 * dev` starts it) and a real Valkey, with cluster reports written by the
 * stand-in worker (tests/helpers/stand_in_worker.ts): the exit code for each
 * final state, the table it prints, and its usage errors. Plus the pure
 * decisions it shares with the Action (exit codes, Retry-After).
 */

import { assert, assertEquals, assertMatch } from "../../helpers/assert.ts";
import { ROOT, startWeb } from "../../helpers/program.ts";
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
import { exitCodeFor, mintDevToken, retryDelayMs } from "../../../tools/trigger.ts";

Deno.test("exitCodeFor() maps each way a wait ends to the documented exit code", async (t) => {
  const status = (state: EventStatus["state"]) => ({ state } as EventStatus);
  const cases: [string, Parameters<typeof exitCodeFor>[0], boolean, number][] = [
    ["succeeded", { status: status("succeeded"), timedOut: false }, true, 0],
    ["failed", { status: status("failed"), timedOut: false }, true, 1],
    ["no_match", { status: status("no_match"), timedOut: false }, true, 1],
    ["no_match, --no-fail-on-no-match", { status: status("no_match"), timedOut: false }, false, 0],
    ["a timeout", { status: status("in_progress"), timedOut: true }, false, 1],
    ["a timeout before any status", { timedOut: true }, true, 1],
  ];
  for (const [name, result, failOnNoMatch, code] of cases) {
    await t.step(name, () => assertEquals(exitCodeFor(result, failOnNoMatch), code));
  }
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

async function trigger(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "trigger", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
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
        const run = await trigger(["ghcr.io/acme/app:dev", "--url", url, "--wait"]);
        assertEquals(run.code, 0, run.stdout + run.stderr);
        const event = worker.events.at(-1)!;
        assertMatch(run.stdout, new RegExp(`^202 \\{"id":"${event.id}"`));
        assert(run.stderr.includes(`Event ${event.id}: succeeded (local: succeeded)`), run.stderr);
        const table = renderStatusText(await statusOf(event.id));
        assert(run.stdout.endsWith(`\n${table}`), run.stdout);
        assertMatch(table, /local +succeeded +apps\/web +restarted +complete +2\/2 +2\/2 +2\/2/);
      });
      await t.step("failed: exit 1, the reason in the table", async () => {
        const run = await trigger(["ghcr.io/acme/app:fail", "--url", url, "--wait"]);
        assertEquals(run.code, 1, run.stdout + run.stderr);
        const event = worker.events.at(-1)!;
        assertMatch(run.stdout, /timed_out +1\/2 +1\/2 +1\/2 +rollout not complete after 10m/);
        assert(
          run.stderr.endsWith(`deno task trigger: event ${event.id} ended failed\n`),
          run.stderr,
        );
      });
      await t.step("no_match: exit 1, and 0 with --no-fail-on-no-match", async () => {
        const strict = await trigger(["ghcr.io/acme/app:nothing", "--url", url, "--wait"]);
        assertEquals(strict.code, 1, strict.stdout + strict.stderr);
        assertMatch(strict.stderr, /ended no_match \(--no-fail-on-no-match accepts this\)\n$/);
        const lenient = await trigger([
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
        const run = await trigger([
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
        const run = await trigger(["ghcr.io/acme/app:slow", "--url", url]);
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
    const run = await trigger(["ghcr.io/acme/app:dev", "--wait", "--timeout", "10"]);
    assertEquals(run.code, 2);
    assert(
      run.stderr.startsWith(
        'deno task trigger: --timeout "10": expected a duration such as 5s or 10m\nusage: deno task trigger <image[:tag]>',
      ),
      run.stderr,
    );
  });
  await t.step("an unknown flag", async () => {
    const run = await trigger(["ghcr.io/acme/app:dev", "--wiat"]);
    assertEquals(run.code, 2);
    assertMatch(run.stderr, /^deno task trigger: Unknown option '--wiat'/);
  });
  await t.step("no image", async () => {
    const run = await trigger(["--wait"]);
    assertEquals(run.code, 2);
    assertMatch(run.stderr, /^usage: deno task trigger/);
  });
});
