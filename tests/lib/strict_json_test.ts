import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { parseStrictJson } from "../../lib/strict_json.ts";

// parseStrictJson builds objects without a prototype (so "__proto__" stays a
// plain key); JSON.parse's answer is rebuilt the same way to compare values.
function withoutPrototypes(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutPrototypes);
  if (value === null || typeof value !== "object") return value;
  const out = Object.create(null);
  for (const [k, v] of Object.entries(value)) out[k] = withoutPrototypes(v);
  return out;
}

Deno.test("parseStrictJson() reads what JSON.parse reads", async (t) => {
  for (
    const text of [
      '{"a":1,"b":[true,false,null,"x\\u0041\\n"],"c":{"d":-1.5e3}}',
      "[]",
      "{}",
      ' \n{ "a" : "b" } \t',
      '"just a string"',
      "0",
    ]
  ) {
    await t.step(
      text,
      () => assertEquals(parseStrictJson(text), withoutPrototypes(JSON.parse(text))),
    );
  }
});

Deno.test("security: parseStrictJson() rejects duplicate keys that JSON.parse would silently merge", () => {
  const err = assertThrows(() => parseStrictJson('{"image":"a","image":"b"}'));
  assertMatch(err.message, /duplicate key "image"/);
  assertThrows(() => parseStrictJson('{"a":{"x":1,"x":2}}'));
  assertThrows(() => parseStrictJson('{"\\u0061":1,"a":2}'));
});

Deno.test("parseStrictJson() rejects trailing data, bad syntax and deep nesting", async (t) => {
  for (
    const text of [
      '{"a":1}{}',
      '{"a":1} x',
      "{'a':1}",
      '{"a":1,}',
      "[1,]",
      '{"a":01}',
      '"\u0001"',
      "",
      "NaN",
      "[".repeat(40) + "]".repeat(40),
    ]
  ) {
    await t.step(
      JSON.stringify(text.slice(0, 30)),
      () => void assertThrows(() => parseStrictJson(text)),
    );
  }
});

Deno.test("parseStrictJson() keeps __proto__ as a plain key", () => {
  const value = parseStrictJson('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
  assertEquals(Object.keys(value), ["__proto__"]);
  assertEquals(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("parseStrictJson() says where it stopped, at the offsets callers log", async (t) => {
  // The messages and offsets of the regex reader this one replaced: web/oidc.ts
  // reads the "duplicate key" prefix and jsonErrorPosition the offset.
  for (
    const [text, message] of [
      ['{"a":1,"a":2}', 'duplicate key "a" at offset 10'],
      ['{"a":1,"\\u0061":2}', 'duplicate key "a" at offset 15'],
      ['{"a":1,}', "expected a key at offset 7"],
      ["[1,]", "unexpected character at offset 3"],
      ['{"a" 1}', "expected ':' at offset 5"],
      ['{"a":1 "b"}', "expected ',' or '}' at offset 7"],
      ["[1 2]", "expected ',' or ']' at offset 3"],
      ['{"a":"x\\qy"}', "invalid string at offset 5"],
      ['["\\u12G4"]', "invalid string at offset 1"],
      ['"\u0001"', "invalid string at offset 0"],
      ['"abc', "invalid string at offset 0"],
      ["1.", "unexpected data after the JSON value at offset 1"],
      ["01", "unexpected data after the JSON value at offset 1"],
      ["-", "unexpected character at offset 0"],
      ["", "unexpected character at offset 0"],
      [" ", "unexpected character at offset 1"],
      ["tru", "unexpected character at offset 0"],
      ['{"a":1} x', "unexpected data after the JSON value at offset 8"],
      ["[".repeat(18) + "]".repeat(18), "nesting too deep at offset 17"],
      ['{"a":'.repeat(17) + "0" + "}".repeat(17), "nesting too deep at offset 85"],
    ]
  ) {
    await t.step(JSON.stringify(text.slice(0, 30)), () => {
      const err = assertThrows(() => parseStrictJson(text));
      assertEquals(err.message, message);
    });
  }
});

Deno.test("parseStrictJson() reads strings and numbers exactly as JSON.parse does", async (t) => {
  for (
    const text of [
      '"\\ud83d\\ude00 \\uD83D\\uDE00"',
      '["\\ud800", "\\udc00x", "a\\ud800\\u0041", "\ud800"]',
      '"\\"\\\\\\/\\b\\f\\n\\r\\t \u007f \u2028 é"',
      "[-0, 0, -0.0, 1e400, -1e400, 5e-324, 1E+2, 0.1e1, -2e-3]",
      "[9007199254740993, 123456789012345, -1234567890123456, 123456789012345678901]",
    ]
  ) {
    await t.step(text, () => {
      const ours = parseStrictJson(text);
      assertEquals(ours, withoutPrototypes(JSON.parse(text)));
      // deepStrictEqual tells -0 from 0, but say so where it matters.
      if (text.startsWith("[-0")) assert(Object.is((ours as number[])[0], -0));
    });
  }
  assertEquals(
    [...(parseStrictJson('"\\ud83d"') as string)].map((c) => c.charCodeAt(0)),
    [0xd83d],
  );
});

Deno.test("security: parseStrictJson() treats Object.prototype's names as plain keys, repeats included", () => {
  const value = parseStrictJson('{"toString":1,"constructor":2,"hasOwnProperty":3,"__proto__":4}');
  assertEquals(Object.keys(value as object), [
    "toString",
    "constructor",
    "hasOwnProperty",
    "__proto__",
  ]);
  assertEquals(Object.getPrototypeOf(value), null);
  const err = assertThrows(() => parseStrictJson('{"__proto__":1,"\\u005f_proto__":2}'));
  assertEquals(err.message, 'duplicate key "__proto__" at offset 31');
});
