/**
 * Differential property test of parseStrictJson over 100,000 mutated token
 * headers, claim sets, event bodies and channel messages, seeded
 * (KRT_FUZZ_SEED). Two oracles judge every input: JSON.parse plus an
 * independent count of duplicate members and of depth (what the reader must
 * accept, and the values it must return), and the regex reader this module
 * replaced, kept below as referenceParseStrictJson (the exact error message,
 * offset included, that callers such as web/oidc.ts and jsonErrorPosition read).
 */

import { AssertionError } from "node:assert/strict";
import { assert } from "../helpers/assert.ts";
import { createRandom, fuzzSeed, mutate } from "../helpers/random.ts";
import { githubClaims } from "../helpers/issuer.ts";
import { jsonErrorPosition } from "../../lib/error_text.ts";
import { type JsonValue, parseStrictJson } from "../../lib/strict_json.ts";

const RUNS = 100_000;
const MAX_DEPTH = 16;

// JSON forbids raw control characters inside strings (RFC 8259 §7).
// deno-lint-ignore no-control-regex
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;

/**
 * Reference oracle: parseStrictJson as it was before the charCodeAt scanner
 * (sticky regexes, JSON.parse per string), unchanged. Slow, but its answers
 * and error offsets are the contract the new reader keeps.
 */
function referenceParseStrictJson(text: string): JsonValue {
  let pos = 0;

  const fail = (what: string): never => {
    throw new Error(`${what} at offset ${pos}`);
  };
  const skipWhitespace = () => {
    WHITESPACE.lastIndex = pos;
    WHITESPACE.exec(text);
    pos = WHITESPACE.lastIndex;
  };
  const readString = (): string => {
    STRING.lastIndex = pos;
    const m = STRING.exec(text);
    if (!m) fail("invalid string");
    pos = STRING.lastIndex;
    return JSON.parse(m![0]) as string;
  };
  const readValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail("nesting too deep");
    skipWhitespace();
    const c = text[pos];
    if (c === "{") return readObject(depth);
    if (c === "[") return readArray(depth);
    if (c === '"') return readString();
    for (const [word, value] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return value;
      }
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m) return fail("unexpected character");
    pos = NUMBER.lastIndex;
    return Number(m[0]);
  };
  const readObject = (depth: number): JsonValue => {
    const out: { [key: string]: JsonValue } = Object.create(null);
    pos++;
    skipWhitespace();
    if (text[pos] === "}") {
      pos++;
      return out;
    }
    for (;;) {
      skipWhitespace();
      if (text[pos] !== '"') fail("expected a key");
      const key = readString();
      if (Object.hasOwn(out, key)) fail(`duplicate key "${key.slice(0, 40)}"`);
      skipWhitespace();
      if (text[pos] !== ":") fail("expected ':'");
      pos++;
      out[key] = readValue(depth + 1);
      skipWhitespace();
      if (text[pos] === ",") {
        pos++;
        continue;
      }
      if (text[pos] === "}") {
        pos++;
        return out;
      }
      fail("expected ',' or '}'");
    }
  };
  const readArray = (depth: number): JsonValue => {
    const out: JsonValue[] = [];
    pos++;
    skipWhitespace();
    if (text[pos] === "]") {
      pos++;
      return out;
    }
    for (;;) {
      out.push(readValue(depth + 1));
      skipWhitespace();
      if (text[pos] === ",") {
        pos++;
        continue;
      }
      if (text[pos] === "]") {
        pos++;
        return out;
      }
      fail("expected ',' or ']'");
    }
  };

  const value = readValue(0);
  skipWhitespace();
  if (pos !== text.length) fail("unexpected data after the JSON value");
  return value;
}

// The test issuer's GitHub claim set, with a fixed jti so that a seed replays the same documents.
const CLAIMS = JSON.stringify({
  ...githubClaims("https://token.actions.githubusercontent.com", 1764600000),
  jti: "0b6f8c1e-3a52-4d8e-9d55-0d7c1f3b2a10",
});

const SEEDS = [
  CLAIMS,
  '{"alg":"RS256","kid":"1F2AB83404C08EC9EA0BB99DAED02186B091DBF4","typ":"JWT","x5t":"Hyq4NATAjsnqC7mdrtAhhrCR2_Q"}',
  '{"image":"ghcr.io/acme/app:dev","tags":["dev"]}',
  '{"id":"0b6f8c1e-3a52-4d8e-9d55-0d7c1f3b2a10","time":"2026-11-21T20:00:00Z","image":"ghcr.io/acme/app","tags":["dev","v1.2.3"]}',
  '{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"k1","n":"0vx7agoebGcQSuuPiLJXZpt","e":"AQAB"},{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}',
  // Escapes, surrogates (paired, lone, raw), every number form, keys named
  // like Object.prototype members and like array indices (which sort first).
  ' {"s":"a\\u0041\\n\\t\\"\\\\\\/\\b\\f\\r","pair":"\\ud83d\\ude00","lone":"\\udc00x\\uD800","raw":"é\ud800😀\u007f",' +
  '"n":[0,-0,1.5,-2e-3,1E+2,123456789012345678,0.1e1,1e400,-1e400,5e-324],"b":[true,false,null],' +
  '"__proto__":{"x":1},"toString":"t","constructor":{},"10":1,"2":0,"":"",' +
  '"nested":{"a":{"b":[[{}],[]]}}}\n',
  // At the depth limit: one more level of either kind is too deep.
  '{"a":'.repeat(8) + "[".repeat(7) + '{"x":1}' + "]".repeat(7) + "}".repeat(8),
  "[".repeat(MAX_DEPTH) + "0" + "]".repeat(MAX_DEPTH),
  '"just a string"',
  "-12.5e+3",
];

const FRAGMENTS = [
  '"',
  "\\",
  '\\"',
  "\\\\",
  "\\/",
  "\\b",
  "\\n",
  "\\t",
  "\\u",
  "\\u00",
  "\\u0061",
  "\\u0041",
  "\\u00E9",
  "\\ud83d",
  "\\uDE00",
  "\\ud83d\\ude00",
  "\\udbff\\udfff",
  "\\ud800\\u0041",
  "\\uzzzz",
  "\\u12g4",
  "\\x41",
  "\\a",
  "\\0",
  "\\U0061",
  "\u0000",
  "\u0001",
  "\u001f",
  "\u007f",
  "\u2028",
  "\ud800",
  "\udc00",
  "\ud83d\ude00",
  "0",
  "1",
  "9",
  "-",
  "+",
  ".",
  "e",
  "E",
  "e+",
  "e-",
  "1e400",
  "-1e400",
  "-0",
  "0.0",
  "00",
  "01",
  "1.",
  ".5",
  "1e",
  "-.5",
  "9007199254740993",
  "123456789012345",
  "-1234567890123456",
  "0x10",
  "Infinity",
  "NaN",
  " ",
  "\t",
  "\n",
  "\r",
  "\u00a0",
  "\ufeff",
  "\v",
  "\f",
  "true",
  "false",
  "null",
  "tru",
  "nul",
  "fals",
  "True",
  ",",
  ":",
  "{",
  "}",
  "[",
  "]",
  "{}",
  "[]",
  '""',
  '"":',
  '"a":1,',
  '"__proto__":',
  '"__proto__":{},',
  '"toString":1,',
  "[[[[[[[[",
  "]]]]]]]]",
];

const MEMBER = /"(?:[^"\\]|\\.)*"\s*:\s*(?:"(?:[^"\\]|\\.)*"|[-\w.+]+|\{\}|\[\])/g;

/** A JSON-aware edit: fragments, truncation, repeated members (key escaped or not), nesting. */
function mutateJson(text: string, rnd: ReturnType<typeof createRandom>): string {
  const at = rnd.int(text.length + 1);
  switch (rnd.int(8)) {
    case 0:
      return text.slice(0, at) + rnd.pick(FRAGMENTS) + text.slice(at);
    case 1:
      return text.slice(0, at) + rnd.pick(FRAGMENTS) + text.slice(at + 1);
    case 2:
      return text.slice(0, at);
    case 3:
    case 4: {
      // Repeats a member after an opening brace or a comma: the same object's
      // key makes a duplicate, another object's does not.
      const members = text.match(MEMBER);
      const anchors = [...text.matchAll(/[{,]/g)].map((m) => m.index!);
      if (!members || anchors.length === 0) return text;
      let member = rnd.pick(members);
      if (rnd.int(2) === 0) member = escapeOneKeyChar(member, rnd);
      const after = rnd.pick(anchors) + 1;
      return text.slice(0, after) + member + "," + text.slice(after);
    }
    case 5: {
      // Same key spelled differently, same decoded string: still the same key.
      const members = [...text.matchAll(MEMBER)];
      if (members.length === 0) return text;
      const m = rnd.pick(members);
      return text.slice(0, m.index!) + escapeOneKeyChar(m[0], rnd) +
        text.slice(m.index! + m[0].length);
    }
    case 6: {
      const levels = 1 + rnd.int(3);
      return rnd.int(2) === 0
        ? "[".repeat(levels) + text + "]".repeat(levels)
        : '{"w":'.repeat(levels) + text + "}".repeat(levels);
    }
    default: {
      // Wraps one value (after a colon or a bracket) in brackets, closing them
      // where a value of the seed ends about as often as not.
      const opens = [...text.matchAll(/[:\[]/g)].map((m) => m.index! + 1);
      if (opens.length === 0) return text;
      const from = rnd.pick(opens);
      const end = text.slice(from).search(/[,}\]]/);
      const to = end < 0 ? text.length : from + end;
      const levels = 1 + rnd.int(3);
      return text.slice(0, from) + "[".repeat(levels) + text.slice(from, to) +
        "]".repeat(levels) + text.slice(to);
    }
  }
}

function escapeOneKeyChar(member: string, rnd: ReturnType<typeof createRandom>): string {
  const close = member.indexOf('"', 1);
  if (close <= 1 || member.slice(1, close).includes("\\")) return member;
  const i = 1 + rnd.int(close - 1);
  const hex = member.charCodeAt(i).toString(16).padStart(4, "0");
  return member.slice(0, i) + "\\u" + (rnd.int(2) ? hex : hex.toUpperCase()) +
    member.slice(i + 1);
}

/**
 * One string per value, injective over what a JSON value can be: key order,
 * -0, Infinity and lone surrogates show (every string and number is tagged, so
 * neither passes for the other). With `nullPrototypes`, also asserts that every
 * object has no prototype and every array is a plain array.
 */
function canonical(value: unknown, nullPrototypes: boolean): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    switch (typeof v) {
      case "string":
        return "s" + v;
      case "number":
        return Object.is(v, -0) ? "n-0" : "n" + v;
      case "object":
        if (nullPrototypes && v !== null) {
          const expected = Array.isArray(v) ? Array.prototype : null;
          assert(Object.getPrototypeOf(v) === expected, "a value has an unexpected prototype");
        }
    }
    return v;
  });
}

/** Members in all objects of `value`, and how deep its deepest value sits (the document is 0). */
function shape(value: unknown, depth = 0): { members: number; depth: number } {
  if (value === null || typeof value !== "object") return { members: 0, depth };
  const children = Array.isArray(value) ? value : Object.values(value);
  let members = Array.isArray(value) ? 0 : children.length;
  let deepest = depth;
  for (const child of children) {
    const inner = shape(child, depth + 1);
    members += inner.members;
    deepest = Math.max(deepest, inner.depth);
  }
  return { members, depth: deepest };
}

/** In a document JSON.parse accepted, the colons outside strings: one per member written. */
function membersWritten(text: string): number {
  let count = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x3a) count++;
  }
  return count;
}

const ESCAPED_KEY = /"(?:[^"\\]|\\.)*\\u[0-9a-fA-F]{4}(?:[^"\\]|\\.)*"\s*:/;

type Outcome = { value: string; parsed: unknown } | { error: string };

function run(parse: (text: string) => unknown, text: string, nullPrototypes: boolean): Outcome {
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch (err) {
    if (!(err instanceof Error)) throw new Error(`threw ${err} for ${JSON.stringify(text)}`);
    return { error: err.message };
  }
  return { value: canonical(parsed, nullPrototypes), parsed };
}

const describe = (outcome: Outcome) => "error" in outcome ? outcome.error : outcome.value;

type Seen = Record<"accepted" | "invalid" | "duplicate" | "escapedDuplicate" | "deep", number>;

/** Judges one input by both oracles; counts which branch it took. */
function check(input: string, seen: Seen): void {
  // Messages are built only on failure: most inputs pass, and stringifying
  // each would double the run time.
  const expect = (condition: boolean, what: () => string) => {
    if (!condition) {
      throw new AssertionError({ message: `input ${JSON.stringify(input)}: ${what()}` });
    }
  };
  const native = run(JSON.parse, input, false);
  let duplicate = false;
  let deep = false;
  if ("value" in native) {
    const found = shape(native.parsed);
    duplicate = membersWritten(input) !== found.members;
    deep = found.depth > MAX_DEPTH;
  }
  const strict = run(parseStrictJson, input, true);
  const reference = run(referenceParseStrictJson, input, true);

  if ("error" in native || duplicate || deep) {
    if (!("error" in strict)) return expect(false, () => `accepted as ${strict.value}`);
    const message = strict.error;
    const offset = /^.+ at offset (\d+)$/s.exec(message)?.[1];
    expect(offset !== undefined && Number(offset) <= input.length, () => message);
    expect(jsonErrorPosition(new Error(message)) === ` at offset ${offset}`, () => message);
    if ("value" in native && !deep) {
      expect(message.startsWith('duplicate key "'), () => message);
    }
    if ("value" in native && !duplicate) {
      expect(/^nesting too deep at offset \d+$/.test(message), () => message);
    }
    seen.invalid += "error" in native ? 1 : 0;
    seen.duplicate += duplicate ? 1 : 0;
    seen.escapedDuplicate += duplicate && ESCAPED_KEY.test(input) ? 1 : 0;
    seen.deep += deep ? 1 : 0;
  } else {
    expect(
      "value" in strict && strict.value === native.value,
      () => `JSON.parse reads ${native.value}, parseStrictJson ${describe(strict)}`,
    );
    seen.accepted++;
  }
  expect(
    "error" in strict === "error" in reference && describe(strict) === describe(reference),
    () => `the old reader says ${describe(reference)}, the new ${describe(strict)}`,
  );
}

Deno.test(`security: parseStrictJson() agrees with JSON.parse and the old reader on ${RUNS} mutated documents (seed ${fuzzSeed()})`, () => {
  const rnd = createRandom(fuzzSeed() + 4);
  const seen: Seen = { accepted: 0, invalid: 0, duplicate: 0, escapedDuplicate: 0, deep: 0 };
  // Most inputs throw three times, and capturing the stacks would be most of the run.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    for (let i = 0; i < RUNS; i++) {
      let input = rnd.pick(SEEDS);
      for (let edits = rnd.int(4); edits > 0; edits--) {
        input = rnd.int(3) === 0 ? mutate(input, rnd) : mutateJson(input, rnd);
      }
      check(input, seen);
    }
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  // The generator must reach every branch, or agreement proves little.
  assert(seen.accepted > 5_000, JSON.stringify(seen));
  assert(seen.invalid > 30_000, JSON.stringify(seen));
  assert(seen.duplicate > 2_000, JSON.stringify(seen));
  assert(seen.escapedDuplicate > 500, JSON.stringify(seen));
  assert(seen.deep > 500, JSON.stringify(seen));
});
