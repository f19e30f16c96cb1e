/**
 * REPOSITORY_RULES (web), a setting whose value is a policy: which GitHub
 * repositories may name which image repositories in an event. Input: the operator's setting text (trusted to
 * mean what it says, not to be well-formed: every problem is reported at once),
 * the sender of a verified token, and an image repository parseImageRef already
 * normalised. Pure: parsed once at start-up, checked per request.
 *
 * Grammar:
 * - Rules are separated by newlines or `;`; blank rules are ignored; rules are
 *   numbered 1, 2, … in the order written, blank ones not counted.
 * - A rule is whitespace-separated tokens:
 *   `<subject> [<condition> ...] -> <pattern>[,<pattern>...]`, with exactly one
 *   `->` token; patterns are separated by commas and/or whitespace.
 * - subject: `owner/name` (ASCII GitHub names, any case), `owner/*` (every
 *   repository of the owner) or `id:<1-20 digits>` (repository_id, compared as
 *   a string: survives renames, and `id:0123` is not `id:123`).
 * - condition: `ref=<v>`, `environment=<v>` or `workflow=<v>` (the workflow_ref
 *   claim); each key at most once per rule (alternatives are two rules). The
 *   value is printable ASCII without whitespace, `,` or `;`, compared
 *   case-sensitively; a trailing `*` makes it a prefix (`ref=refs/tags/v*`).
 *   A sender without an environment never meets an environment condition.
 * - pattern: an image repository written normalised and lower-case
 *   (`ghcr.io/acme/app`, `docker.io/library/nginx`). Whole path components may
 *   be `*` (any one component) or `{repository}` (the sender's owner/name, two
 *   components); the registry host may not. A pattern allows the image equal to
 *   it or below it on a path-component boundary, like ALLOWED_IMAGE_PREFIX.
 * - A rule grants when its subject and all its conditions match the sender and
 *   one of its patterns allows the image. Rules only grant; no rules at all
 *   means no restriction. `acme/* -> ghcr.io/{repository}` lets every acme
 *   repository name the images named after it, and nothing of its neighbours'.
 * - Bounds: 64 KiB of text, 1000 rules, 100 patterns per rule.
 */

import { isOwnerName, type Sender } from "../shared/event_sender.ts";
import { parseImageRef } from "../shared/image_ref.ts";
import { asciiLowerCase, isGitHubName } from "../lib/setting_values.ts";

/** Parsed REPOSITORY_RULES. */
export interface RepositoryRules {
  /** How many rules (0 = no rules configured: every authorized repository may name any allowed image). */
  size: number;
  /** undefined when some rule gives `sender` the normalised image repository `image`; else a one-line reason for the log. */
  check(sender: Sender, image: string): string | undefined;
  /** Problem lines for patterns that no image under any of `prefixes` (normalised ALLOWED_IMAGE_PREFIX) can match. */
  unreachable(prefixes: readonly string[]): string[];
}

/** Most characters of setting text read. */
export const MAX_RULES_TEXT = 64 * 1024;
/** Most rules. */
export const MAX_RULES = 1000;
/** Most patterns in one rule. */
export const MAX_PATTERNS = 100;

const ANY = "*";
const REPOSITORY = "{repository}";
// ASCII whitespace only: a no-break space stays inside its token and is refused there.
const SPACE = /[ \t\r\f\v]+/;
const ID_SUBJECT = /^id:([0-9]{1,20})$/;
const VALUE = /^[\x21-\x7e]+$/;
const SUBJECT_FORMS = "must be owner/name, owner/* or id:<repository_id> (1-20 digits), in ASCII";
const WILDCARDS =
  "may use * (any one component) and {repository} (owner/name) only as whole path components, e.g. ghcr.io/acme/* or ghcr.io/{repository}";
// Condition keys as written, and the Sender member each one reads.
const CLAIMS = new Map<string, Condition["claim"]>([
  ["ref", "ref"],
  ["environment", "environment"],
  ["workflow", "workflowRef"],
]);

type Subject = { kind: "repository" | "owner" | "id"; value: string };
interface Condition {
  claim: "ref" | "environment" | "workflowRef";
  value: string;
  prefix: boolean;
}
interface Pattern {
  text: string;
  /** Components; ANY and REPOSITORY are wildcards (no literal component contains `*` or `{`). */
  parts: readonly string[];
  /** The parts with REPOSITORY as two ANY: what reachability compares. */
  slots: readonly string[];
}
interface Rule {
  number: number;
  subject: Subject;
  conditions: readonly Condition[];
  patterns: readonly Pattern[];
}
/** The sender as rules compare it. */
interface Who {
  sender: Sender;
  repository: string;
  owner: string;
  name: string;
}

const quote = (token: string) => JSON.stringify(token.slice(0, 100));

function parseSubject(token: string): Subject | string {
  const id = ID_SUBJECT.exec(token);
  if (id) return { kind: "id", value: id[1] };
  const [owner, name, ...rest] = token.split("/");
  // Security: ASCII GitHub names only, checked before case folding, so no
  // Unicode letter (the Kelvin sign) can fold onto another owner's name.
  if (name === undefined || rest.length > 0 || !isGitHubName(owner)) {
    return `subject ${quote(token)} ${SUBJECT_FORMS}`;
  }
  if (name === ANY) return { kind: "owner", value: asciiLowerCase(owner) };
  if (!isGitHubName(name)) return `subject ${quote(token)} ${SUBJECT_FORMS}`;
  return { kind: "repository", value: asciiLowerCase(`${owner}/${name}`) };
}

function parseCondition(token: string): Condition | string {
  const eq = token.indexOf("=");
  const claim = eq < 0 ? undefined : CLAIMS.get(token.slice(0, eq));
  if (claim === undefined) {
    return `condition ${quote(token)} must be ref=<value>, environment=<value> or workflow=<value>`;
  }
  const value = token.slice(eq + 1);
  if (!VALUE.test(value) || value.includes(",")) {
    return `condition ${quote(token)} needs a value of printable ASCII without spaces, "," or ";"`;
  }
  const star = value.indexOf("*");
  if (star >= 0 && star < value.length - 1) {
    return `condition ${quote(token)} may have * only at the end (a prefix, e.g. ref=refs/tags/v*)`;
  }
  const prefix = star >= 0;
  return { claim, value: prefix ? value.slice(0, -1) : value, prefix };
}

function parseConditions(tokens: readonly string[], problems: string[]): Condition[] {
  const conditions: Condition[] = [];
  for (const token of tokens) {
    const condition = parseCondition(token);
    if (typeof condition === "string") problems.push(condition);
    else if (conditions.some((c) => c.claim === condition.claim)) {
      problems.push(`condition ${quote(token)} repeats its key; write alternatives as two rules`);
    } else conditions.push(condition);
  }
  return conditions;
}

// Normalisation only changes the host or prepends `docker.io/` or `library/`,
// so the written components are a suffix of the normalised ones: wildcards are
// put back from the end.
function restoreWildcards(normalised: string, parts: readonly string[]): string {
  const out = normalised.split("/");
  let at = out.length;
  for (let i = parts.length - 1; i > 0; i--) {
    if (parts[i] === REPOSITORY) out.splice(at -= 2, 2, REPOSITORY);
    else if (parts[i] === ANY) out[at -= 1] = ANY;
    else at -= 1;
  }
  return out.join("/");
}

/** Validates by parsing with a placeholder component for each wildcard. */
function parsePattern(token: string): Pattern | string {
  const parts = token.split("/");
  if (parts.some((p) => p !== ANY && p !== REPOSITORY && /[*{}]/.test(p))) {
    return `pattern ${quote(token)} ${WILDCARDS}`;
  }
  if (parts[0] === ANY || parts[0] === REPOSITORY) {
    return `pattern ${quote(token)} must start with a registry host, not a wildcard`;
  }
  const written = parts.map((p) => p === ANY ? "x" : p === REPOSITORY ? "x/x" : p).join("/");
  let normalised: string;
  try {
    // Lower-cased first so that an upper-case pattern gets a "write it as" rather than a parse error.
    const ref = parseImageRef(asciiLowerCase(written));
    if (ref.tag !== undefined || ref.digest !== undefined) {
      return `pattern ${quote(token)} must be a repository, without a tag or digest`;
    }
    normalised = ref.repository;
  } catch (err) {
    return `pattern ${quote(token)} is not an image repository: ${
      (err as Error).message.slice(0, 200)
    }`;
  }
  if (normalised !== written) {
    return `pattern ${quote(token)} is not written normalised and lower-case: write it as ${
      restoreWildcards(normalised, parts)
    }`;
  }
  return { text: token, parts, slots: parts.flatMap((p) => p === REPOSITORY ? [ANY, ANY] : [p]) };
}

function parsePatterns(tokens: readonly string[], problems: string[]): Pattern[] {
  const texts = [...new Set(tokens.flatMap((t) => t.split(",")).filter((t) => t !== ""))];
  if (texts.length === 0) problems.push("has no pattern after ->");
  if (texts.length > MAX_PATTERNS) {
    problems.push(`has ${texts.length} patterns, more than ${MAX_PATTERNS}`);
    return [];
  }
  const patterns: Pattern[] = [];
  for (const text of texts) {
    const pattern = parsePattern(text);
    if (typeof pattern === "string") problems.push(pattern);
    else patterns.push(pattern);
  }
  return patterns;
}

/** One rule's text; its problems are pushed without the `rule N: ` prefix. */
function parseRule(text: string, number: number, problems: string[]): Rule | undefined {
  const tokens = text.split(SPACE).filter((t) => t !== "");
  const arrow = tokens.indexOf("->");
  if (arrow < 0 || tokens.lastIndexOf("->") !== arrow) {
    problems.push(`needs exactly one -> between spaces, as in acme/* -> ghcr.io/{repository}`);
    return undefined;
  }
  const subject = arrow === 0 ? "has no subject before ->" : parseSubject(tokens[0]);
  if (typeof subject === "string") problems.push(subject);
  const conditions = parseConditions(tokens.slice(1, arrow), problems);
  const patterns = parsePatterns(tokens.slice(arrow + 1), problems);
  if (problems.length > 0 || typeof subject === "string") return undefined;
  return { number, subject, conditions, patterns };
}

/** Parses the setting; throws AggregateError with one Error (`rule N: …`) per problem. */
export function parseRepositoryRules(raw: string): RepositoryRules {
  // Security: bounded work on any input; past 64 KiB nothing else is read.
  const texts = raw.slice(0, MAX_RULES_TEXT + 1).split(/[\n;]/).filter((t) => t.trim() !== "");
  if (raw.length > MAX_RULES_TEXT) {
    const where = `rule ${Math.max(texts.length, 1)}`;
    throw problemsError([`${where}: REPOSITORY_RULES is longer than ${MAX_RULES_TEXT} characters`]);
  }
  const problems: string[] = [];
  const rules: Rule[] = [];
  for (const [i, text] of texts.slice(0, MAX_RULES).entries()) {
    const found: string[] = [];
    const rule = parseRule(text, i + 1, found);
    problems.push(...found.map((p) => `rule ${i + 1}: ${p}`));
    if (rule) rules.push(rule);
  }
  if (texts.length > MAX_RULES) {
    problems.push(`rule ${MAX_RULES + 1}: more than ${MAX_RULES} rules`);
  }
  // Set but empty (only separators) reads as a mistake, not as "no restriction".
  if (raw.trim() !== "" && texts.length === 0) {
    problems.push("rule 1: REPOSITORY_RULES is set but holds no rule; unset it for no rules");
  }
  if (problems.length > 0) throw problemsError(problems);
  return createRules(rules);
}

function problemsError(problems: readonly string[]): AggregateError {
  const n = problems.length;
  return new AggregateError(problems.map((p) => new Error(p)), `${n} problem${n === 1 ? "" : "s"}`);
}

function subjectMatches(subject: Subject, who: Who): boolean {
  if (subject.kind === "id") return subject.value === who.sender.repositoryId;
  return subject.value === (subject.kind === "owner" ? who.owner : who.repository);
}

function conditionMatches(condition: Condition, sender: Sender): boolean {
  const value = sender[condition.claim];
  if (value === undefined) return false;
  return condition.prefix ? value.startsWith(condition.value) : value === condition.value;
}

/** Componentwise: the image equals the pattern or lies below it, never beside it. */
function patternAllows(parts: readonly string[], image: readonly string[], who: Who): boolean {
  let at = 0;
  for (const part of parts) {
    if (part === REPOSITORY) {
      if (image[at] !== who.owner || image[at + 1] !== who.name) return false;
      at += 2;
      continue;
    }
    // `*` needs one non-empty component; anything else is compared whole, never as a prefix.
    if (part === ANY ? !image[at] : image[at] !== part) return false;
    at += 1;
  }
  return true;
}

function grants(rule: Rule, who: Who, image: readonly string[]): boolean {
  return subjectMatches(rule.subject, who) &&
    rule.conditions.every((c) => conditionMatches(c, who.sender)) &&
    rule.patterns.some((p) => patternAllows(p.parts, image, who));
}

/** True when the pattern and the prefix agree on their common length: some image lies under both. */
function agrees(slots: readonly string[], prefix: readonly string[]): boolean {
  const common = Math.min(slots.length, prefix.length);
  for (let i = 0; i < common; i++) if (slots[i] !== ANY && slots[i] !== prefix[i]) return false;
  return true;
}

function createRules(rules: readonly Rule[]): RepositoryRules {
  return {
    size: rules.length,
    check(sender, image) {
      if (rules.length === 0) return undefined;
      if (!isOwnerName(sender.repository)) return "sender repository is not owner/name";
      const repository = asciiLowerCase(sender.repository);
      const [owner, name] = repository.split("/");
      const who: Who = { sender, repository, owner, name };
      const parts = image.split("/");
      if (rules.some((rule) => grants(rule, who, parts))) return undefined;
      return `no rule in REPOSITORY_RULES gives ${repository} (repository_id ${sender.repositoryId}) ${image}`;
    },
    unreachable(prefixes) {
      const split = prefixes.map((p) => p.split("/"));
      const under = `is not under ALLOWED_IMAGE_PREFIX (${prefixes.join(", ")})`;
      return rules.flatMap((rule) =>
        rule.patterns.filter((p) => !split.some((prefix) => agrees(p.slots, prefix)))
          .map((p) => `rule ${rule.number}: ${p.text} ${under}`)
      );
    },
  };
}
