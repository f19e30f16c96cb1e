/**
 * A strict JSON reader for small untrusted documents (HTTP bodies, Valkey
 * messages). `JSON.parse` silently keeps the last of duplicate keys, which lets
 * two parsers disagree on one body; this reader rejects duplicates, trailing
 * data and deep nesting instead. Objects come back as null-prototype records,
 * so a `__proto__` key is just a key.
 */

/** A JSON value as read by parseStrictJson. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

const MAX_DEPTH = 16;
// JSON forbids raw control characters inside strings (RFC 8259 §7).
// deno-lint-ignore no-control-regex
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;

/** Parses `text` as one JSON value; throws an Error saying where it went wrong. */
export function parseStrictJson(text: string): JsonValue {
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
