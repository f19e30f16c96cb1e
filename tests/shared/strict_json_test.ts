import { assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { parseStrictJson } from "../../shared/strict_json.ts";

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
