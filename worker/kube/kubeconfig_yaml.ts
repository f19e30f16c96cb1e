/**
 * The kubeconfig as YAML: parsed, then read field by field with its shape
 * checked, so a valid YAML file of the wrong shape (`clusters: 5`, a context
 * that is a list) fails with one line naming the field, not a TypeError.
 *
 * Security: the file holds tokens and keys. Errors name a field by its
 * position (`users[0].user.token`) and the kind of value found, never the
 * value, and never the yaml library's message, which quotes the lines around
 * the error.
 */

import { parse, YAMLError } from "yaml";
import { AppError } from "../../shared/errors.ts";

function kubeError(message: string): AppError {
  return new AppError("ERR_KUBE", message);
}

/** A YAML mapping. */
export type Mapping = Record<string, unknown>;

function isMapping(value: unknown): value is Mapping {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What a value is, for shape errors: its kind, never its content. */
function kindOf(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return "text";
  return `a ${typeof value}`;
}

/**
 * A yaml library error as its code and position, e.g. `YAML error BAD_INDENT at
 * line 16, column 1`. Security: never its message, which quotes the lines
 * around the error.
 */
export function describeYamlError(err: unknown): string {
  const where = err instanceof YAMLError && err.linePos
    ? ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}`
    : "";
  const kind = err instanceof YAMLError ? err.code : err instanceof Error ? err.name : "error";
  return `YAML error ${kind}${where}`;
}

/**
 * Parses the kubeconfig text. Security: the yaml library's messages quote the
 * lines around an error (often a `token:` line) and its warnings print them to
 * stderr, so warnings are silenced and errors reduced to their code and position.
 */
export function parseKubeconfigYaml(text: string, path: string): Mapping {
  let doc: unknown;
  try {
    doc = parse(text, { logLevel: "error", prettyErrors: true });
  } catch (err) {
    throw kubeError(
      `Cannot parse kubeconfig ${path}: ${
        describeYamlError(err)
      } (the line is not shown: it may hold a credential)`,
    );
  }
  if (!isMapping(doc)) {
    throw kubeError(`Kubeconfig ${path} must be a YAML mapping (found ${kindOf(doc)})`);
  }
  return doc;
}

/** Reads typed fields of one mapping, naming the field (by position) in errors. */
export function fieldsOf(mapping: Mapping, where: string) {
  const at = (key: string) => where.endsWith(":") ? `${where} ${key}` : `${where}.${key}`;
  const wrong = (key: string, expected: string) =>
    kubeError(`${at(key)} must be ${expected} (found ${kindOf(mapping[key])})`);
  return {
    text(key: string): string | undefined {
      const value = mapping[key];
      if (value === undefined || value === null) return undefined;
      if (typeof value !== "string") throw wrong(key, "text");
      return value;
    },
    mapping(key: string): Mapping {
      const value = mapping[key];
      if (value === undefined || value === null) return {};
      if (!isMapping(value)) throw wrong(key, "a mapping");
      return value;
    },
    list(key: string): Mapping[] {
      const value = mapping[key];
      if (value === undefined || value === null) return [];
      if (!Array.isArray(value)) throw wrong(key, "a list");
      value.forEach((item, i) => {
        if (!isMapping(item)) {
          throw kubeError(`${at(key)}[${i}] must be a mapping (found ${kindOf(item)})`);
        }
      });
      return value as Mapping[];
    },
  };
}

/** One entry of a kubeconfig list (contexts, clusters, users): its body and where it is. */
export interface Entry {
  /** E.g. `Kubeconfig /k: users[0].user`: a position, never a value. */
  where: string;
  body: Mapping;
  fields: ReturnType<typeof fieldsOf>;
}

/** Finds the entry named `name` of `list` and reads its `body` mapping. */
export function findNamed(
  doc: Mapping,
  path: string,
  list: string,
  body: string,
  name: string,
): Entry | undefined {
  const entries = fieldsOf(doc, `Kubeconfig ${path}:`).list(list);
  const i = entries.findIndex((e) => e.name === name);
  if (i < 0) return undefined;
  const where = `Kubeconfig ${path}: ${list}[${i}]`;
  const mapping = fieldsOf(entries[i], where).mapping(body);
  return {
    where: `${where}.${body}`,
    body: mapping,
    fields: fieldsOf(mapping, `${where}.${body}`),
  };
}
