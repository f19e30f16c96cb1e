/**
 * The Action's default `timeout` against the worker's default
 * ROLLOUT_TIMEOUT (config/worker_settings.ts): the Action must outwait the
 * workers, so a slow rollout ends in the workers' verdict (`timed_out`, a
 * failed event with its reason in the table) rather than in the Action's own
 * "still in_progress". `deno task trigger --wait` has the same default.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { readAction } from "./helpers/action_runner.ts";
import { WORKER_SETTINGS } from "../config/worker_settings.ts";
import { parseDuration } from "../lib/setting_values.ts";
import { DEFAULT_TIMEOUT } from "../tools/trigger.ts";

/**
 * What the Action needs beyond the worker's timeout: the worker's last
 * report after its deadline and web's answer, and a status read that was
 * just started waiting out its slice (25 s) with its request allowance.
 */
const MARGIN_MS = 2 * 60_000;

Deno.test("action.yml's default timeout outlasts the worker's default ROLLOUT_TIMEOUT by 2 minutes", () => {
  const action = parseDuration(String(readAction().inputs.timeout.default));
  const rollout = parseDuration(WORKER_SETTINGS.rolloutTimeout.default!);
  assert(
    action >= rollout + MARGIN_MS,
    `timeout ${action / 1000}s must exceed ROLLOUT_TIMEOUT ${rollout / 1000}s by ${
      MARGIN_MS / 1000
    }s`,
  );
});

Deno.test("deno task trigger --wait has the Action's default timeout", () => {
  assertEquals(DEFAULT_TIMEOUT, String(readAction().inputs.timeout.default));
});
