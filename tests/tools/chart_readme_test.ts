/**
 * The chart's README and its values table (tools/chart_readme.ts), without
 * helm: the table in k8s/helm/kuberollouttrigger/README.md is what
 * values.yaml's comments and values.schema.json make of it, every value has
 * a comment, and values.yaml and the schema name the same keys. Inputs of the
 * table tests are small values files written here.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { normalizeTables, withGeneratedBlocks } from "../../tools/docs.ts";
import {
  CHART_README,
  ChartValuesError,
  listValues,
  renderValuesTable,
  type Schema,
  tableCell,
} from "../../tools/chart_readme.ts";

Deno.test("the chart README lists every value exactly as values.yaml's comments and values.schema.json give it (run `deno task docs` after changing either)", async () => {
  const text = await Deno.readTextFile(CHART_README);
  assertEquals(normalizeTables(text), normalizeTables(withGeneratedBlocks(CHART_README, text)));
});

/** A schema for the small values files below: `a` a closed group, `m` an open map. */
const SCHEMA: Schema = {
  type: "object",
  additionalProperties: false,
  properties: {
    global: { type: "object" },
    a: {
      type: "object",
      additionalProperties: false,
      properties: {
        n: { type: "integer" },
        ref: { $ref: "#/definitions/ref" },
      },
    },
    m: { type: "object", additionalProperties: { type: "string" } },
    l: { type: "array", items: { type: "string" } },
  },
  definitions: {
    ref: {
      type: "object",
      additionalProperties: false,
      properties: { name: { type: "string" }, key: { type: "string" } },
    },
  },
};

Deno.test("listValues() makes a row per value, a row per commented group, in values.yaml's order", () => {
  const rows = listValues(
    [
      "# The group.",
      "a:",
      "  # A number; the comment above a map's first key is that key's.",
      "  n: 2",
      "  # A reference, one value.",
      "  ref: { name: s, key: k }",
      "# An open map.",
      "m: { x: y }",
      "# A list.",
      "l: [p]",
    ].join("\n"),
    SCHEMA,
  );
  assertEquals(rows, [
    { key: "a", type: "object", description: "The group." },
    {
      key: "a.n",
      type: "integer",
      default: 2,
      description: "A number; the comment above a map's first key is that key's.",
    },
    {
      key: "a.ref",
      type: "{name, key}",
      default: { name: "s", key: "k" },
      description: "A reference, one value.",
    },
    { key: "m", type: "map of string", default: { x: "y" }, description: "An open map." },
    { key: "l", type: "list of string", default: ["p"], description: "A list." },
  ]);
});

Deno.test("listValues() refuses values it cannot document, naming each", async (t) => {
  const full = "a:\n  # n\n  n: 1\n  # r\n  ref: {}\n# m\nm: {}\n# l\nl: []\n";
  const cases: [string, string, RegExp][] = [
    [
      "a value without a comment",
      full.replace("  # n\n", ""),
      /a\.n has no comment in values\.yaml/,
    ],
    [
      "a key the schema lacks",
      `${full}# x\nx: 1\n`,
      /x is not in values\.schema\.json/,
    ],
    [
      "a key of the schema values.yaml lacks",
      full.replace("# l\nl: []\n", ""),
      /l is in values\.schema\.json but not in values\.yaml/,
    ],
    [
      "a comment inside a value that is one row",
      full.replace("m: {}", "m:\n  # lost\n  x: y"),
      /m is one value in the table, so the comments inside it would not be shown/,
    ],
    ["YAML that does not parse", "a: [\n", /values\.yaml does not parse \(line \d+\)/],
  ];
  for (const [what, values, message] of cases) {
    await t.step(what, () => {
      const err = assertThrows(() => listValues(values, SCHEMA), {
        instanceOf: ChartValuesError,
        code: "ERR_CHART_VALUES",
      });
      assertMatch(err.message, message);
    });
  }
  await t.step("every problem at once", () => {
    const err = assertThrows(() => listValues("a:\n  n: 1\n", SCHEMA)) as ChartValuesError;
    assertEquals(err.problems, [
      "a.n has no comment in values.yaml",
      "a.ref is in values.schema.json but not in values.yaml",
      "m is in values.schema.json but not in values.yaml",
      "l is in values.schema.json but not in values.yaml",
    ]);
  });
});

Deno.test("security: tableCell() keeps a comment inside its Markdown cell: pipes escaped, no HTML outside code", () => {
  assertEquals(tableCell("a | b"), "a \\| b");
  assertEquals(tableCell("<script> `<key>` x"), "&lt;script> `<key>` x");
  assertEquals(tableCell("`a|b`"), "`a\\|b`", "a pipe ends a cell even in code");
  const table = renderValuesTable([
    { key: "k", type: "string", default: "x|y", description: "<b>|" },
  ]);
  assertEquals(table.split("\n")[2], '| `k` | string | `"x\\|y"` | &lt;b>\\| |');
  assert(!table.includes("<b>"));
});
