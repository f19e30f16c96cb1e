/** The status table shared by `deno task trigger --wait` and (as jq) the Action's job summary. */

import { assert, assertEquals } from "../helpers/assert.ts";
import type { EventStatus } from "../../shared/event_status.ts";
import {
  inertText,
  markdownText,
  MAX_ROWS,
  renderStatusMarkdown,
  renderStatusText,
  restartedTotal,
  shown,
  skippedSummary,
  STATUS_COLUMNS,
  statusRows,
} from "../../tools/status_table.ts";

const counts = (restarted: number, extra: Partial<Record<string, number>> = {}) => ({
  restarted,
  skipped: 0,
  failed: 0,
  dry_run: 0,
  complete: restarted,
  progressing: 0,
  rollout_failed: 0,
  ...extra,
});

const STATUS: EventStatus = {
  id: "0b6f8c1e-3a52-4d8e-9d55-0d7c1f3b2a10",
  state: "failed",
  final: true,
  image: "ghcr.io/acme/app",
  tags: ["dev", "v1"],
  time: "2026-12-01T09:00:00.000Z",
  clusters: [
    {
      cluster: "eu-1",
      state: "failed",
      matched: 5,
      counts: counts(2, { skipped: 1, complete: 1, rollout_failed: 1 }),
      deployments: [
        {
          namespace: "shop",
          name: "web",
          result: "restarted",
          rollout: {
            state: "failed",
            reason: "ProgressDeadlineExceeded",
            replicas: 3,
            updated: 1,
            ready: 2,
            available: 2,
          },
        },
        { namespace: "shop", name: "batch", result: "skipped", reason: "paused" },
      ],
      omitted: 2,
      updated: "2026-12-01T09:00:05.000Z",
    },
    {
      cluster: "us-1",
      state: "no_report",
      matched: 0,
      deployments: [],
      omitted: 0,
      reason: "no report within 30s of publishing",
    },
    { cluster: "ap-1", state: "pending", matched: 0, deployments: [], omitted: 0 },
    {
      cluster: "sa-1",
      state: "no_match",
      matched: 0,
      counts: counts(0),
      deployments: [],
      omitted: 0,
    },
  ],
};

Deno.test("statusRows() gives one row per Deployment, per cluster without any, and per counted rest", () => {
  assertEquals(statusRows(STATUS), [
    [
      "eu-1",
      "failed",
      "shop/web",
      "restarted",
      "failed",
      "1/3",
      "2/3",
      "2/3",
      "ProgressDeadlineExceeded",
    ],
    ["eu-1", "failed", "shop/batch", "skipped", "", "", "", "", "paused"],
    ["eu-1", "failed", "… 2 more", "", "", "", "", "", "counted, not listed"],
    ["us-1", "no_report", "", "", "", "", "", "", "no report within 30s of publishing"],
    ["ap-1", "pending", "", "", "", "", "", "", "waiting for its report"],
    ["sa-1", "no_match", "", "", "", "", "", "", "nothing here runs the image"],
  ]);
});

Deno.test("restartedTotal() adds every cluster's restarted count, named or only counted", () => {
  assertEquals(restartedTotal(STATUS), 2);
  assertEquals(restartedTotal({ ...STATUS, clusters: [] }), 0);
});

Deno.test("renderStatusMarkdown() writes the heading, the totals and the table", () => {
  const text = renderStatusMarkdown(STATUS);
  const lines = text.split("\n");
  assertEquals(lines[0], "### kuberollouttrigger: failed");
  assertEquals(
    lines[2],
    "Event 0b6f8c1e-3a52-4d8e-9d55-0d7c1f3b2a10 for ghcr.io/acme/app \\(tags dev, v1\\): 2 restarted, 1 skipped, 0 failed; rollouts: 1 complete, 0 progressing, 1 failed",
  );
  assertEquals(lines[4], `| ${STATUS_COLUMNS.join(" | ")} |`);
  assertEquals(lines[5], "|---|---|---|---|---|---|---|---|---|");
  assertEquals(lines.length, 6 + 6 + 1);
  assert(text.endsWith("|\n"));
  assertEquals(
    renderStatusMarkdown(STATUS, { timedOut: true }).split("\n")[0],
    "### kuberollouttrigger: timed out while failed",
  );
});

Deno.test("renderStatusMarkdown() shows web's reason when no cluster gives one", () => {
  const lines = renderStatusMarkdown({
    ...STATUS,
    clusters: [],
    reason: "no cluster was live or reported",
  }).split("\n");
  assertEquals(lines.slice(3, 7), [
    "",
    "Reason: no cluster was live or reported",
    "",
    `| ${STATUS_COLUMNS.join(" | ")} |`,
  ]);
});

Deno.test("security: report text cannot break the Markdown table or inject HTML", () => {
  const hostile: EventStatus = {
    ...STATUS,
    clusters: [{
      ...STATUS.clusters[0],
      deployments: [{
        namespace: "shop",
        name: "web",
        result: "failed",
        reason: "a | b\n| x | <img src=x onerror=alert(1)> &amp;\r\u0007",
      }],
      omitted: 0,
    }],
  };
  const lines = renderStatusMarkdown(hostile).split("\n");
  assertEquals(
    lines[6],
    "| eu-1 | failed | shop/web | failed |  |  |  |  | a \\| b \\| x \\| &lt;img src=x onerror=alert\\(1\\)&gt; &amp;amp;   |",
  );
  assertEquals(lines.length, 8, "the newline in the reason did not add a row");
});

Deno.test("renderStatusText() aligns the same columns for a terminal", () => {
  const lines = renderStatusText(STATUS).trimEnd().split("\n");
  assertEquals(lines[0], "kuberollouttrigger: failed");
  const header = lines[3];
  assertEquals(header.split(/\s+/), [...STATUS_COLUMNS]);
  const start = (column: string) => header.indexOf(column);
  const webRow = lines[4];
  assertEquals(webRow.indexOf("shop/web"), start("deployment"));
  assertEquals(webRow.indexOf("ProgressDeadlineExceeded"), start("reason"));
  assertEquals(lines[6].indexOf("… 2 more"), start("deployment"));
  assertEquals(lines.length, 4 + 6);
});

Deno.test("security: markdownText() leaves Markdown nothing to act on", async (t) => {
  const cases: [string, string][] = [
    ["![x](https://evil.example/p.png)", "\\!\\[x\\]\\(https:\u200b//evil.example/p.png\\)"],
    ["[click](https://evil.example)", "\\[click\\]\\(https:\u200b//evil.example\\)"],
    ["<img src=x>", "&lt;img src=x&gt;"],
    ["&lt;b&gt;", "&amp;lt;b&amp;gt;"],
    ["see https://evil.example", "see https:\u200b//evil.example"],
    ["WWW.evil.example", "WWW\u200b.evil.example"],
    ["mail a@evil.example", "mail a\u200b@evil.example"],
    ["# heading", "\\# heading"],
    [
      "`code` **b** _i_ ~~s~~ $m$ [^1]",
      "\\`code\\` \\*\\*b\\*\\* \\_i\\_ \\~\\~s\\~\\~ \\$m\\$ \\[\\^1\\]",
    ],
    ["a | b", "a \\| b"],
    ["back\\slash", "back\\\\slash"],
    ["two\nlines\r", "two lines "],
  ];
  for (const [input, expected] of cases) {
    await t.step(JSON.stringify(input), () => assertEquals(markdownText(input), expected));
  }
});

Deno.test("inertText() gives one line of at most 300 characters without control or bidi characters", () => {
  assertEquals(
    inertText("a\nb\rc\td\u001b[31me\u0085f\u2028g\u202eh\u2066i"),
    "a b c d [31me f g h i",
  );
  const long = inertText("é".repeat(400));
  assertEquals([...long].length, 301);
  assert(long.endsWith("é…"));
  assertEquals(inertText("x".repeat(300)), "x".repeat(300), "300 is not cut");
});

Deno.test("shown() shows strings as they are, counts as digits, anything else as ?", () => {
  assertEquals(
    ["a", 3, 0, -1, 1.5, 1e10, Infinity, null, undefined, {}, [], true].map(shown),
    ["a", "3", "0", "?", "?", "?", "?", "", "", "?", "?", "?"],
  );
});

Deno.test("security: renderStatusText() passes no terminal escape sequence", () => {
  const text = renderStatusText({
    ...STATUS,
    image: "\u001b]0;title\u0007ghcr.io/acme/app",
    clusters: [{
      ...STATUS.clusters[1],
      cluster: "\u001b[2J\u001b[31meu-1",
      reason: "\u009b31m\u202eevil",
    }],
  });
  // deno-lint-ignore no-control-regex
  assert(!/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/.test(text), JSON.stringify(text));
});

Deno.test("renderStatusMarkdown() shows at most MAX_ROWS rows and counts the rest", () => {
  const many = Array.from({ length: MAX_ROWS + 5 }, (_, i) => ({
    namespace: "shop",
    name: `web-${i}`,
    result: "skipped" as const,
    reason: "paused",
  }));
  const lines = renderStatusMarkdown({
    ...STATUS,
    clusters: [{ ...STATUS.clusters[0], deployments: many, omitted: 0 }],
  }).trimEnd().split("\n");
  assertEquals(lines.filter((l) => l.startsWith("| eu-1 |")).length, MAX_ROWS);
  assertEquals(lines.slice(-2), ["", "… 5 more rows not shown"]);
});

Deno.test("skippedSummary() counts the skipped Deployments' reasons, most frequent first", () => {
  const skipped = (name: string, reason?: string) => ({
    namespace: "shop",
    name,
    result: "skipped" as const,
    ...(reason === undefined ? {} : { reason }),
  });
  const status: EventStatus = {
    ...STATUS,
    state: "skipped",
    clusters: [{
      ...STATUS.clusters[0],
      counts: counts(0, { skipped: 6, complete: 0 }),
      deployments: [
        skipped("a", "opted_out"),
        skipped("b", "paused"),
        skipped("c", "paused"),
        skipped("d"),
        { namespace: "shop", name: "e", result: "restarted" },
      ],
      omitted: 2,
    }],
  };
  assertEquals(skippedSummary(status), "2 paused, 1 no reason given, 1 opted_out, 2 not named");
});
