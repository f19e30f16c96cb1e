/**
 * Kubernetes label selectors: the subset of apimachinery's `labels.Parse`
 * grammar the API server takes as `labelSelector` (`key`, `!key`, `=`, `==`,
 * `!=`, `in`, `notin`), parsed into requirements, written back as canonical
 * text and matched against labels the way the API server matches them.
 *
 * Trusts nothing in the input: everything outside the grammar is refused, and
 * the text callers send on is rebuilt from validated keys and values, never
 * passed through.
 */

/** A parsed selector: the text to send and the same decision made locally. */
export interface LabelSelector {
  /** The canonical text to send as `labelSelector` (requirements joined by `,`, set values sorted, `==` written `=`). */
  text: string;
  /** True when `labels` (metadata.labels; undefined = none) satisfy every requirement, as the API server decides. */
  matches(labels: Readonly<Record<string, string>> | undefined): boolean;
}

type Operator = "exists" | "!" | "=" | "!=" | "in" | "notin";

interface Requirement {
  key: string;
  operator: Operator;
  /** Sorted and without duplicates; one value for `=` and `!=`, none for `exists` and `!`. */
  values: string[];
}

type TokenKind = "id" | "!" | "=" | "==" | "!=" | ">" | "<" | "(" | ")" | "," | "end";

interface Token {
  kind: TokenKind;
  text: string;
  offset: number;
}

const MAX_TEXT = 4096;
const MAX_REQUIREMENTS = 100;

// apimachinery's lexer: space, tab, CR and LF separate tokens; the symbols
// below are operators and punctuation (longest match, so `!=` and `==` are
// one token); any other run of characters is an identifier, checked later.
const TOKEN = /([ \t\r\n]+)|(==|!=|[!=<>(),])|[^ \t\r\n!=<>(),]+/y;

// k8s.io/apimachinery/pkg/util/validation: IsQualifiedName, IsValidLabelValue
// and IsDNS1123Subdomain. Security: lengths are checked before these run, so
// their backtracking stays bounded.
const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAME_RULE = 'letters, digits, "-", "_" and ".", starting and ending with a letter or digit';

/**
 * Parses a selector; throws an Error with one line naming the first problem
 * (quoted text cut to 100 chars via JSON.stringify). An empty/blank string is
 * an error too ("is empty"): callers only parse a set value.
 */
export function parseLabelSelector(raw: string): LabelSelector {
  if (raw.length > MAX_TEXT) throw new Error(`is longer than ${MAX_TEXT} characters`);
  const tokens = tokenize(raw);
  if (tokens[0].kind === "end") throw new Error("is empty");
  let pos = 0;
  const peek = () => tokens[pos];
  // The end token is never consumed past: every caller stops at it.
  const next = () => tokens[pos++];

  const parseSet = (operator: Token): string[] => {
    const open = next();
    if (open.kind !== "(") throw unexpected(open, `"(" after "${operator.text}"`);
    // Stricter than apimachinery, which reads `()` as the set of the empty
    // value: that reading surprises, so the empty value must be written `(,)`.
    if (peek().kind === ")") {
      throw new Error(
        `the set after "${operator.text}" at offset ${operator.offset} is empty; list at least one value`,
      );
    }
    // As apimachinery: an empty entry (`(,a)`, `(a,,b)`, `(a,)`) is the empty value.
    const values = new Set<string>();
    for (;;) {
      const entry = peek();
      if (entry.kind === "id") values.add(checkValue(next()));
      else if (entry.kind === "," || entry.kind === ")") values.add("");
      else throw unexpected(entry, 'a value, "," or ")"');
      const separator = next();
      if (separator.kind === ")") return [...values].sort();
      if (separator.kind !== ",") throw unexpected(separator, '"," or ")"');
    }
  };

  const parseRequirement = (): Requirement => {
    const first = next();
    if (first.kind === "!") {
      const key = checkKey(next(), 'a key after "!"');
      const after = peek();
      if (after.kind !== "," && after.kind !== "end") {
        throw unexpected(after, `"," or the end after "!${key}"`);
      }
      return { key, operator: "!", values: [] };
    }
    const key = checkKey(first, 'a key or "!"');
    const op = peek();
    switch (op.kind) {
      case ",":
      case "end":
        return { key, operator: "exists", values: [] };
      case "=":
      case "==":
      case "!=": {
        next();
        // `key=` (then "," or the end) selects the empty value, as apimachinery.
        const value = peek();
        if (value.kind === "," || value.kind === "end") {
          return { key, operator: op.kind === "!=" ? "!=" : "=", values: [""] };
        }
        if (value.kind !== "id") throw unexpected(value, `a value after "${op.text}"`);
        return { key, operator: op.kind === "!=" ? "!=" : "=", values: [checkValue(next())] };
      }
      case ">":
      case "<":
        throw new Error(
          `operator "${op.text}" at offset ${op.offset} is not supported (gt/lt); use =, ==, !=, in or notin`,
        );
      case "id":
        if (op.text === "in" || op.text === "notin") {
          next();
          return { key, operator: op.text, values: parseSet(op) };
        }
    }
    throw unexpected(op, `an operator (=, ==, !=, in, notin), "," or the end after ${quote(key)}`);
  };

  const requirements: Requirement[] = [];
  for (;;) {
    if (requirements.length === MAX_REQUIREMENTS) {
      throw new Error(`has more than ${MAX_REQUIREMENTS} requirements`);
    }
    requirements.push(parseRequirement());
    const separator = next();
    if (separator.kind === "end") break;
    if (separator.kind !== ",") throw unexpected(separator, '"," or the end');
    if (peek().kind === "end") {
      throw new Error(
        `ends with "," at offset ${separator.offset}; remove it or add a requirement`,
      );
    }
  }
  const text = requirements.map(requirementText).join(",");
  const sets = requirements.map((r) => new Set(r.values));
  return Object.freeze({
    text,
    matches: (labels: Readonly<Record<string, string>> | undefined) =>
      requirements.every((r, i) => satisfies(r, sets[i], labels)),
  });
}

function tokenize(raw: string): Token[] {
  const tokens: Token[] = [];
  let index = 0;
  while (index < raw.length) {
    TOKEN.lastIndex = index;
    // Every character matches one of the three alternatives, so this never fails.
    const m = TOKEN.exec(raw)!;
    if (m[1] === undefined) {
      tokens.push({
        kind: m[2] === undefined ? "id" : m[2] as TokenKind,
        text: m[0],
        offset: index,
      });
    }
    index = TOKEN.lastIndex;
  }
  tokens.push({ kind: "end", text: "", offset: raw.length });
  return tokens;
}

/** A one-line quotation of (up to 100 characters of) input for an error message. */
function quote(text: string): string {
  // Security: JSON.stringify escapes quotes and control characters; escaping
  // every other non-ASCII character too keeps the message one plain line (no
  // U+2028, no bidi controls) whatever the input held.
  return JSON.stringify(text.slice(0, 100)).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function unexpected(token: Token, wanted: string): Error {
  const found = token.kind === "end" ? "the end" : quote(token.text);
  return new Error(`expected ${wanted} at offset ${token.offset}, found ${found}`);
}

function nameProblem(text: string, what: string): string | undefined {
  if (text === "") return `has an empty ${what}`;
  if (text.length > 63) return `has a ${what} longer than 63 characters`;
  if (!NAME.test(text)) return `has a ${what} that is not ${NAME_RULE}`;
  return undefined;
}

/** Why `key` is not a qualified name (`[prefix/]name`), or undefined when it is one. */
function keyProblem(key: string): string | undefined {
  const parts = key.split("/");
  if (parts.length > 2) return 'has more than one "/"';
  if (parts.length === 2) {
    const prefix = parts[0];
    if (prefix === "") return 'has an empty prefix before "/"';
    if (prefix.length > 253) return "has a prefix longer than 253 characters";
    if (!DNS_SUBDOMAIN.test(prefix)) {
      return 'has a prefix that is not a DNS subdomain (lower-case letters, digits, "-" and ".")';
    }
  }
  return nameProblem(parts[parts.length - 1], "name");
}

function checkKey(token: Token, wanted: string): string {
  if (token.kind !== "id") throw unexpected(token, wanted);
  const problem = keyProblem(token.text);
  if (problem) throw new Error(`key ${quote(token.text)} at offset ${token.offset} ${problem}`);
  return token.text;
}

function checkValue(token: Token): string {
  const value = token.text;
  const problem = value.length > 63
    ? "is longer than 63 characters"
    : NAME.test(value)
    ? undefined
    : `is not ${NAME_RULE}`;
  if (problem) throw new Error(`value ${quote(value)} at offset ${token.offset} ${problem}`);
  return value;
}

function requirementText(r: Requirement): string {
  switch (r.operator) {
    case "exists":
      return r.key;
    case "!":
      return `!${r.key}`;
    case "=":
    case "!=":
      return `${r.key}${r.operator}${r.values[0]}`;
    case "in":
    case "notin":
      // The set holding only the empty value is written `(,)`: `()` is refused here.
      return `${r.key} ${r.operator} (${r.values.join(",") || ","})`;
  }
}

// apimachinery's Requirement.Matches: `=`/`in` need the label with a listed
// value; `!=`/`notin` match when it is absent or has another value.
function satisfies(
  r: Requirement,
  values: ReadonlySet<string>,
  labels: Readonly<Record<string, string>> | undefined,
): boolean {
  // Security: own string properties only, so a key such as `constructor` or
  // `toString` never reads Object.prototype.
  const value = labels !== undefined && Object.hasOwn(labels, r.key) ? labels[r.key] : undefined;
  const present = typeof value === "string";
  switch (r.operator) {
    case "exists":
      return present;
    case "!":
      return !present;
    case "=":
    case "in":
      return present && values.has(value);
    case "!=":
    case "notin":
      return !present || !values.has(value);
  }
}
