import { assert, assertEquals } from "../helpers/assert.ts";
import { describeError, jsonErrorPosition } from "../../lib/error_text.ts";
import { parseStrictJson } from "../../lib/strict_json.ts";

Deno.test("describeError() gives one line of at most 500 characters for any thrown value", () => {
  assertEquals(
    describeError(new Error("GET /x:\n  403\tForbidden ")),
    "GET /x: 403 Forbidden",
  );
  assertEquals(describeError(new TypeError("")), "TypeError");
  assertEquals(describeError("plain"), "plain");
  assertEquals(describeError(new Error("x".repeat(900))).length, 500);
});

Deno.test("security: jsonErrorPosition() says where parsing stopped and never what the text was", () => {
  const secret = '{"token":"s3cr3t-value"';
  for (const parse of [JSON.parse, parseStrictJson]) {
    let err: unknown;
    try {
      parse(secret);
    } catch (e) {
      err = e;
    }
    const where = jsonErrorPosition(err);
    assert(/^( at offset \d+)?$/.test(where), where);
    assert(!where.includes("s3cr3t"));
  }
  assertEquals(
    jsonErrorPosition(new Error("Unexpected token at position 12 near 's3cr3t'")),
    " at offset 12",
  );
  assertEquals(jsonErrorPosition("not an error"), "");
  // A key that itself reads "at offset 7": the position is the parser's, not digits of the text.
  let duplicate: unknown;
  try {
    parseStrictJson('{"at offset 7":1,"at offset 7":2}');
  } catch (e) {
    duplicate = e;
  }
  assertEquals(jsonErrorPosition(duplicate), " at offset 30");
});
