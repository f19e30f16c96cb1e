/**
 * The values table of the chart's README (k8s/helm/kuberollouttrigger/README.md):
 * one row per value of values.yaml, described by the comment above it, typed
 * by values.schema.json, with its default from values.yaml. The comments are
 * the one source of the descriptions; `deno task docs` writes the table
 * (tools/docs.ts) and tests/helm/chart_readme_test.ts fails on drift.
 *
 * A closed object of the schema (additionalProperties: false, written inline)
 * is a group: its keys get rows of their own, and it gets one when it has a
 * comment. Anything else is one value, including the reusable shapes of the
 * schema's definitions ({name, key}) and the open maps Kubernetes takes as
 * they are (resources, affinity, env). Every value must have a comment, and
 * values.yaml and the schema must name the same keys: the table is refused
 * otherwise, with every problem listed. Input is the chart's own files; the
 * comments are still escaped for a Markdown table cell.
 */

import { isCollection, isMap, isPair, isScalar, parseDocument, type YAMLMap } from "yaml";
import { ROOT } from "./program.ts";

/** The chart's directory. */
export const CHART_DIR = `${ROOT}k8s/helm/kuberollouttrigger`;
/** The chart's README, holding the generated values table. */
export const CHART_README = `${CHART_DIR}/README.md`;

/** The part of JSON Schema (draft-07) that values.schema.json uses. */
export interface Schema {
  type?: string | string[];
  $ref?: string;
  enum?: unknown[];
  oneOf?: Schema[];
  items?: Schema;
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  definitions?: Record<string, Schema>;
}

/** One row of the values table. */
export interface ValueRow {
  /** The dotted path, e.g. `web.ingress.host`. */
  key: string;
  type: string;
  /** The default, as values.yaml gives it; absent for a group. */
  default?: unknown;
  description: string;
}

/** values.yaml and values.schema.json disagree, or a value lacks its comment. */
export class ChartValuesError extends Error {
  readonly code = "ERR_CHART_VALUES";
  constructor(readonly problems: string[]) {
    super(
      `Cannot document the chart's values: ${problems.join("; ")}. ` +
        "Fix k8s/helm/kuberollouttrigger/values.yaml or values.schema.json, then run `deno task docs`",
    );
    this.name = "ChartValuesError";
  }
}

/** Keys the schema allows that values.yaml does not set: Helm's own. */
const HELM_KEYS = new Set(["global"]);

/** `schema` with its `$ref` (to `#/definitions/…`) followed. */
function resolve(schema: Schema, root: Schema): Schema {
  if (!schema.$ref) return schema;
  const name = schema.$ref.replace(/^#\/definitions\//, "");
  const target = root.definitions?.[name];
  if (!target) throw new ChartValuesError([`values.schema.json: ${schema.$ref} is not defined`]);
  return resolve(target, root);
}

/** A closed object written inline: its keys are rows of their own. */
function isGroup(schema: Schema): boolean {
  return !schema.$ref && schema.additionalProperties === false && schema.properties !== undefined;
}

/** The type column for `schema`: `integer`, `list of string`, `map of string`, `{name, key}`, … */
export function typeName(schema: Schema, root: Schema): string {
  const s = resolve(schema, root);
  if (s.oneOf) return s.oneOf.map((o) => typeName(o, root)).join(" or ");
  if (s.enum) return `one of ${s.enum.map((v) => String(v)).join(", ")}`;
  const types = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
  if (types.length === 0) return "any";
  return types.map((type) => {
    if (type === "array") return s.items ? `list of ${typeName(s.items, root)}` : "list";
    if (type !== "object") return type;
    if (s.additionalProperties === false && s.properties) {
      return `{${Object.keys(s.properties).join(", ")}}`;
    }
    if (typeof s.additionalProperties === "object") {
      return `map of ${typeName(s.additionalProperties, root)}`;
    }
    return "object";
  }).join(" or ");
}

/** A comment block as one line: `#` stripped, lines joined. */
function commentText(comment: string | null | undefined): string {
  return (comment ?? "").split("\n").map((line) => line.trim()).filter(Boolean).join(" ");
}

/** Whether a comment sits inside `node` (a map or list of values.yaml). */
function hasInnerComment(node: unknown): boolean {
  if (!isCollection(node)) return false;
  if (node.commentBefore) return true;
  return node.items.some((item) =>
    isPair(item)
      ? (isScalar(item.key) && Boolean(item.key.commentBefore)) || hasInnerComment(item.value)
      : (isScalar(item) && Boolean(item.commentBefore)) || hasInnerComment(item)
  );
}

/**
 * The rows of the values table, in values.yaml's order. Throws
 * ChartValuesError listing every key that lacks a comment or that one file
 * has and the other has not.
 */
export function listValues(valuesText: string, schema: Schema): ValueRow[] {
  const doc = parseDocument(valuesText);
  if (doc.errors.length > 0) {
    // Positions only: the parser's message may quote the line.
    const at = doc.errors.map((e) => `line ${e.linePos?.[0].line ?? "?"}`).join(", ");
    throw new ChartValuesError([`values.yaml does not parse (${at})`]);
  }
  const root = schema;
  const rows: ValueRow[] = [];
  const problems: string[] = [];

  const walk = (map: YAMLMap, group: Schema, prefix: string) => {
    const properties = group.properties ?? {};
    const seen = new Set<string>();
    map.items.forEach((pair, index) => {
      const name = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const key = `${prefix}${name}`;
      seen.add(name);
      // yaml puts the comment above a map's first key on the map itself.
      const first = index === 0 ? map.commentBefore : undefined;
      const keyComment = isScalar(pair.key) ? pair.key.commentBefore : undefined;
      const description = commentText([first, keyComment].filter(Boolean).join("\n"));
      const declared = properties[name];
      if (!declared) {
        problems.push(`${key} is not in values.schema.json`);
        return;
      }
      if (isGroup(declared) && isMap(pair.value)) {
        if (description) rows.push({ key, type: "object", description });
        walk(pair.value, declared, `${key}.`);
        return;
      }
      if (!description) problems.push(`${key} has no comment in values.yaml`);
      if (hasInnerComment(pair.value)) {
        problems.push(
          `${key} is one value in the table, so the comments inside it would not be shown: make it an inline closed object in values.schema.json, or move them above ${key}`,
        );
      }
      rows.push({
        key,
        type: typeName(declared, root),
        default: (pair.value as { toJSON?: () => unknown })?.toJSON?.() ?? null,
        description,
      });
    });
    for (const name of Object.keys(properties)) {
      if (!seen.has(name) && !(prefix === "" && HELM_KEYS.has(name))) {
        problems.push(`${prefix}${name} is in values.schema.json but not in values.yaml`);
      }
    }
  };

  if (!isMap(doc.contents)) throw new ChartValuesError(["values.yaml is not a map"]);
  walk(doc.contents, schema, "");
  if (problems.length > 0) throw new ChartValuesError(problems);
  return rows;
}

/** Text for a Markdown table cell: `|` escaped, `<` outside code spans as `&lt;` (no HTML). */
export function tableCell(text: string): string {
  return text.split("`").map((part, i) =>
    (i % 2 === 1 ? part : part.replaceAll("<", "&lt;")).replaceAll("|", "\\|")
  ).join("`");
}

/** A default as a code span: JSON, compact. */
function defaultCell(value: unknown): string {
  return tableCell(`\`${JSON.stringify(value)}\``);
}

/** The values table for `rows`. */
export function renderValuesTable(rows: readonly ValueRow[]): string {
  const lines = [
    "| key | type | default | description |",
    "| --- | --- | --- | --- |",
    ...rows.map((row) =>
      `| \`${row.key}\` | ${tableCell(row.type)} | ${
        "default" in row ? defaultCell(row.default) : ""
      } | ${tableCell(row.description)} |`
    ),
  ];
  return lines.join("\n");
}

/** The values table of the chart on disk. */
export function renderChartValuesTable(): string {
  const values = Deno.readTextFileSync(`${CHART_DIR}/values.yaml`);
  const schema = JSON.parse(Deno.readTextFileSync(`${CHART_DIR}/values.schema.json`)) as Schema;
  return renderValuesTable(listValues(values, schema));
}
