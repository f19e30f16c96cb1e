import { assert, assertEquals } from "../helpers/assert.ts";
import { AppError, ConfigError, ERROR_CODES, renderErrorCodeTable } from "../../shared/errors.ts";

Deno.test("ConfigError lists every problem in its message, with its own code", () => {
  const err = new ConfigError("ERR_CONFIG", ["A is required", "B must be a duration"]);
  assertEquals([err.code, err.message, err.problems], [
    "ERR_CONFIG",
    "A is required; B must be a duration",
    ["A is required", "B must be a duration"],
  ]);
  assert(err instanceof AppError);
});

Deno.test("renderErrorCodeTable() has one row per code, with its line", () => {
  const rows = renderErrorCodeTable().split("\n").slice(2);
  assertEquals(rows.length, Object.keys(ERROR_CODES).length);
  for (const [code, doc] of Object.entries(ERROR_CODES)) {
    assert(rows.includes(`| \`${code}\` | ${doc} |`), code);
  }
});
