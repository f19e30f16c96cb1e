/**
 * The Action is bash and cannot import the states web answers: both places
 * it names them (the status body's check and the `state` output's grammar)
 * must list exactly shared/event_status.ts' OVERALL_STATES, or a new state
 * would make every workflow fail with "not an event status".
 */

import { assertEquals } from "./helpers/assert.ts";
import { ROOT } from "./helpers/program.ts";
import { OVERALL_STATES } from "../shared/event_status.ts";

Deno.test("action.yml checks the status body and the state output against exactly the states web answers", () => {
  const script = Deno.readTextFileSync(`${ROOT}action.yml`);
  const output = /state\) \[\[ \$2 =~ \^\(([a-z_|]+)\)\$ \]\]/.exec(script)?.[1]?.split("|");
  const body = /\(\.state \| IN\(([^)]*)\)\)/.exec(script)?.[1]?.split(",").map((s) =>
    s.trim().replaceAll('"', "")
  );
  const expected = [...OVERALL_STATES].sort();
  assertEquals(output?.sort(), expected);
  assertEquals(body?.sort(), expected);
});
