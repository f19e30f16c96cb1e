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

// It runs for every token and event, so it scans char codes by hand: regexes,
// a JSON.parse per string and temporary arrays made it about ten times slower than
// JSON.parse. The scan is synchronous and calls nothing back, so one module-wide
// cursor is safe and spares a closure per call.
let src = "";
let pos = 0;

/** Parses `text` as one JSON value; throws an Error saying where it went wrong. */
export function parseStrictJson(text: string): JsonValue {
  src = text;
  pos = 0;
  try {
    const value = readValue(0);
    skipWhitespace();
    if (pos !== src.length) fail("unexpected data after the JSON value");
    return value;
  } finally {
    // Holding the last document would keep a token's text alive.
    src = "";
  }
}

// web/oidc.ts and jsonErrorPosition read "<what> at offset N": keep the form.
function fail(what: string): never {
  throw new Error(`${what} at offset ${pos}`);
}

// RFC 8259 §2: only these four are whitespace.
function skipWhitespace(): void {
  for (;;) {
    const c = src.charCodeAt(pos);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
    else return;
  }
}

function readValue(depth: number): JsonValue {
  if (depth > MAX_DEPTH) fail("nesting too deep");
  skipWhitespace();
  switch (src.charCodeAt(pos)) {
    case 0x7b: // {
      return readObject(depth);
    case 0x5b: // [
      return readArray(depth);
    case 0x22: // "
      return readString();
    case 0x74: // t
      if (src.startsWith("true", pos)) {
        pos += 4;
        return true;
      }
      break;
    case 0x66: // f
      if (src.startsWith("false", pos)) {
        pos += 5;
        return false;
      }
      break;
    case 0x6e: // n
      if (src.startsWith("null", pos)) {
        pos += 4;
        return null;
      }
      break;
  }
  return readNumber();
}

function readObject(depth: number): JsonValue {
  const out: { [key: string]: JsonValue } = Object.create(null);
  pos++;
  skipWhitespace();
  if (src.charCodeAt(pos) === 0x7d) {
    pos++;
    return out;
  }
  for (;;) {
    skipWhitespace();
    if (src.charCodeAt(pos) !== 0x22) fail("expected a key");
    const key = readString();
    // Security: the decoded key is compared, so "\u0061" repeats "a". No value
    // is undefined and the record has no prototype, so this is an own-key test.
    if (out[key] !== undefined) fail(`duplicate key "${key.slice(0, 40)}"`);
    skipWhitespace();
    if (src.charCodeAt(pos) !== 0x3a) fail("expected ':'");
    pos++;
    out[key] = readValue(depth + 1);
    skipWhitespace();
    const c = src.charCodeAt(pos);
    if (c === 0x2c) {
      pos++;
      continue;
    }
    if (c === 0x7d) {
      pos++;
      return out;
    }
    fail("expected ',' or '}'");
  }
}

function readArray(depth: number): JsonValue {
  const out: JsonValue[] = [];
  pos++;
  skipWhitespace();
  if (src.charCodeAt(pos) === 0x5d) {
    pos++;
    return out;
  }
  for (;;) {
    out.push(readValue(depth + 1));
    skipWhitespace();
    const c = src.charCodeAt(pos);
    if (c === 0x2c) {
      pos++;
      continue;
    }
    if (c === 0x5d) {
      pos++;
      return out;
    }
    fail("expected ',' or ']'");
  }
}

// A string's errors are reported at its opening quote, wherever inside it the
// fault is. Past the end charCodeAt gives NaN, which `>= 0x20` also refuses.
function readString(): string {
  const start = pos;
  for (let i = start + 1;; i++) {
    const c = src.charCodeAt(i);
    if (c === 0x22) {
      pos = i + 1;
      return src.slice(start + 1, i);
    }
    if (c === 0x5c) return readEscapedString(start, i);
    // RFC 8259 §7: control characters must be escaped.
    if (!(c >= 0x20)) return failString(start);
  }
}

function readEscapedString(start: number, from: number): string {
  let out = src.slice(start + 1, from);
  let chunk = from;
  for (let i = from;;) {
    const c = src.charCodeAt(i);
    if (c === 0x22) {
      pos = i + 1;
      return out + src.slice(chunk, i);
    }
    if (c === 0x5c) {
      out += src.slice(chunk, i);
      const escaped = ESCAPES[src.charCodeAt(i + 1)];
      if (escaped !== undefined) {
        out += escaped;
        i += 2;
      } else if (src.charCodeAt(i + 1) === 0x75) { // u
        const code = (hexDigit(src.charCodeAt(i + 2)) << 12) |
          (hexDigit(src.charCodeAt(i + 3)) << 8) |
          (hexDigit(src.charCodeAt(i + 4)) << 4) |
          hexDigit(src.charCodeAt(i + 5));
        if (code < 0) return failString(start);
        // One UTF-16 unit per escape: a pair joins by itself and a lone
        // surrogate stays one, as JSON.parse keeps it.
        out += String.fromCharCode(code);
        i += 6;
      } else {
        return failString(start);
      }
      chunk = i;
      continue;
    }
    if (!(c >= 0x20)) return failString(start);
    i++;
  }
}

function failString(start: number): never {
  pos = start;
  return fail("invalid string");
}

const ESCAPES: (string | undefined)[] = [];
ESCAPES[0x22] = '"';
ESCAPES[0x5c] = "\\";
ESCAPES[0x2f] = "/";
ESCAPES[0x62] = "\b";
ESCAPES[0x66] = "\f";
ESCAPES[0x6e] = "\n";
ESCAPES[0x72] = "\r";
ESCAPES[0x74] = "\t";

// -1 for a non-digit: shifted and ORed with the others it keeps the sign bit.
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x57;
  return -1;
}

// RFC 8259 §6, taking the longest prefix that is a number as the old regex did:
// "1." reads 1 and leaves the "." to fail as what follows.
function readNumber(): number {
  const start = pos;
  let i = start;
  let c = src.charCodeAt(i);
  if (c === 0x2d) c = src.charCodeAt(++i); // -
  let whole = 0;
  if (c === 0x30) {
    c = src.charCodeAt(++i);
  } else if (c >= 0x31 && c <= 0x39) {
    do {
      whole = whole * 10 + c - 0x30;
      c = src.charCodeAt(++i);
    } while (c >= 0x30 && c <= 0x39);
  } else {
    return fail("unexpected character");
  }
  // Up to 15 digits the sum above is exact; "-0" gives -0 as JSON.parse does.
  let exact = i - start <= 15;
  if (c === 0x2e && isDigit(src.charCodeAt(i + 1))) {
    i += 2;
    while (isDigit(src.charCodeAt(i))) i++;
    c = src.charCodeAt(i);
    exact = false;
  }
  if (c === 0x65 || c === 0x45) { // e E
    let j = i + 1;
    const sign = src.charCodeAt(j);
    if (sign === 0x2b || sign === 0x2d) j++;
    if (isDigit(src.charCodeAt(j))) {
      i = j + 1;
      while (isDigit(src.charCodeAt(i))) i++;
      exact = false;
    }
  }
  pos = i;
  if (exact) return src.charCodeAt(start) === 0x2d ? -whole : whole;
  // Number() rounds as JSON.parse does; 1e400 is Infinity, which callers check.
  return Number(src.slice(start, i));
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
