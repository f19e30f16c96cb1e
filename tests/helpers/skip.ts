/**
 * The suite's policy for missing servers: under CI=true a missing server is a
 * failure; elsewhere the test is skipped with a loud reason on stderr. Under
 * `deno task test:unit` (NO_SERVERS_ENV) no server exists for the tests at all
 * and nothing may be skipped, so a real-server test in the unit tier fails.
 */

import { findValkeyBinary } from "../../tools/valkey_server.ts";

/** Set by tests/unit.ts: the in-process tier, where tests may start no server or program. */
export const NO_SERVERS_ENV = "KRT_TEST_NO_SERVERS";
/** True in the in-process tier. */
export const NO_SERVERS = Deno.env.get(NO_SERVERS_ENV) === "1";
/** True when running in CI (or the unit tier), where nothing may be skipped. */
export const IN_CI = Deno.env.get("CI") === "true" || NO_SERVERS;

/** Throws in the in-process tier, where `what` must not be started. */
export function assertServersAllowed(what: string): void {
  if (NO_SERVERS) {
    throw new Error(
      `${what} started in the in-process tier (deno task test:unit): move this test under tests/integration/ or tests/e2e/`,
    );
  }
}

/** Returns true when the test should be ignored; throws in CI. */
export function missing(what: string, howToGet: string): boolean {
  const message = `${what} is missing: ${howToGet}`;
  if (IN_CI) throw new Error(`${message} (CI=true: tests may not be skipped)`);
  console.error(`\n!!! SKIPPING: ${message}\n`);
  return true;
}

/** `ignore` value for tests that need a Valkey-compatible server. */
export function withoutValkey(): boolean {
  return !NO_SERVERS && findValkeyBinary() ? false : missing(
    "valkey-server/redis-server",
    "apt-get install redis-server (or valkey-server), or run `deno task test`, which says what to install",
  );
}
