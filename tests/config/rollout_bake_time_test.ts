/** ROLLOUT_BAKE_TIME: a worker duration, off (0s) by default, from the environment or its flag. */

import { assertEquals } from "../helpers/assert.ts";
import { parseCommandLine } from "../../config/command_line.ts";
import { ConfigError } from "../../shared/errors.ts";

const env = (values: Record<string, string>) => (name: string) =>
  ({ VALKEY_ADDR: "127.0.0.1:6379", ALLOWED_IMAGE_PREFIX: "ghcr.io/acme", ...values })[name];

Deno.test("ROLLOUT_BAKE_TIME is off by default and read as a duration from the environment or --rollout-bake-time", async (t) => {
  const bakeTime = (args: string[], values: Record<string, string> = {}) => {
    const parsed = parseCommandLine("worker", args, env(values));
    return parsed.kind === "config" ? parsed.config.rolloutBakeTime : parsed.kind;
  };
  await t.step("unset: 0 (no bake, complete as soon as it looks complete)", () => {
    assertEquals(bakeTime([]), 0);
  });
  await t.step("from the environment", () => {
    assertEquals(bakeTime([], { ROLLOUT_BAKE_TIME: "2m" }), 120_000);
  });
  await t.step("from the flag", () => {
    assertEquals(bakeTime(["--rollout-bake-time=90s"]), 90_000);
  });
  await t.step("not a duration: refused, naming the setting", () => {
    let problems: string[] = [];
    try {
      bakeTime([], { ROLLOUT_BAKE_TIME: "soon" });
    } catch (err) {
      if (err instanceof ConfigError) problems = [...err.problems];
    }
    assertEquals(problems.length, 1);
    assertEquals(problems[0].includes("ROLLOUT_BAKE_TIME"), true, problems[0]);
  });
});
