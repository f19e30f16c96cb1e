/**
 * The suite's policy for missing servers: under CI=true a missing server is a
 * failure; elsewhere the test is skipped with a loud reason on stderr.
 */

import { findValkeyBinary } from "./valkey.ts";

/** True when running in CI, where nothing may be skipped. */
export const IN_CI = Deno.env.get("CI") === "true";

/** Returns true when the test should be ignored; throws in CI. */
export function missing(what: string, howToGet: string): boolean {
  const message = `${what} is missing: ${howToGet}`;
  if (IN_CI) throw new Error(`${message} (CI=true: tests may not be skipped)`);
  console.error(`\n!!! SKIPPING: ${message}\n`);
  return true;
}

/** `ignore` value for tests that need a Valkey-compatible server. */
export function withoutValkey(): boolean {
  return findValkeyBinary() ? false : missing(
    "valkey-server/redis-server",
    "apt-get install redis-server (or valkey-server), or run `deno task test`, which says what to install",
  );
}
