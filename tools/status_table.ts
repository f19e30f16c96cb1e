/**
 * The table of an event's status (SPEC §12) that `deno task trigger --wait`
 * prints, row for row the one action.yml writes to the job summary with jq:
 * same heading, same columns, same cells, same escaping. The status comes
 * from web, whose reports come from Valkey, which anyone with its password
 * can write, or from whatever answers at the URL: nothing in it is trusted.
 * Fields are read leniently for show (a number that is not a count is "?",
 * anything but a string or a number is "?"); every cell is reduced to one
 * line of at most 300 characters without control or bidi characters (so no
 * ANSI sequence reaches a terminal), and the Markdown form escapes what would
 * add a link, an image, HTML, a heading or a column.
 */

import type { EventStatus, ReportCounts } from "../shared/event_status.ts";

/** The table's columns, in order (action.yml's jq uses the same list). */
export const STATUS_COLUMNS = [
  "cluster",
  "state",
  "deployment",
  "restart",
  "rollout",
  "updated",
  "ready",
  "available",
  "reason",
] as const;

/** Most characters of one cell; longer text is cut and ends in "…". */
export const MAX_CELL_CHARS = 300;
/** Most rows in the table; a line after it counts the rest. */
export const MAX_ROWS = 300;

/** What the table says besides the status itself. */
export interface TableOptions {
  /** The caller gave up waiting before the state was final. */
  timedOut?: boolean;
}

const NOTES: Record<string, string> = {
  pending: "waiting for its report",
  no_report: "no report: the cluster did not answer in time",
  no_match: "nothing here runs the image",
  skipped: "every Deployment running the image was skipped",
  dry_run: "dry run: nothing was restarted",
};

// C0 and C1 controls, DEL, line and paragraph separators, bidi overrides and isolates.
// deno-lint-ignore no-control-regex
const INVISIBLE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** A count as web writes it (0..1e9, whole), else undefined. */
export function countOf(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 1e9
    ? value
    : undefined;
}

/** A field for show: a string as it is, a count as digits, nothing as "", anything else "?". */
export function shown(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number") return countOf(value)?.toString() ?? "?";
  return value === null || value === undefined ? "" : "?";
}

/** One line without control or bidi characters, cut at MAX_CELL_CHARS (jq's `inert`). */
export function inertText(text: string): string {
  const chars = [...text.replace(INVISIBLE, " ")];
  return chars.length > MAX_CELL_CHARS
    ? chars.slice(0, MAX_CELL_CHARS).join("") + "…"
    : chars.join("");
}

// Security: every character Markdown (GFM) gives a meaning mid-line: code,
// emphasis, links and images, headings and issue references, tables,
// strikethrough, math, footnotes. A cell never starts a line, so `-`, `+`,
// `=` and `>` at a line's start need nothing more.
const MARKDOWN_ACTIVE = new Set("\\`*_[]()#!|~$^");

/**
 * A cell for the job summary (jq's `md`): inert, Markdown's active
 * characters backslash-escaped, `& < >` as entities, and GFM's autolinks
 * (`scheme://`, `www.`, `user@host`, which link without any markup) broken
 * by a zero-width space.
 */
export function markdownText(text: string): string {
  let out = "";
  for (const ch of inertText(text)) {
    if (ch === "&") out += "&amp;";
    else if (ch === "<") out += "&lt;";
    else if (ch === ">") out += "&gt;";
    else if (MARKDOWN_ACTIVE.has(ch)) out += "\\" + ch;
    else out += ch;
  }
  return out.replaceAll("://", ":\u200b//").replace(/([Ww][Ww][Ww])\./g, "$1\u200b.")
    .replaceAll("@", "\u200b@");
}

function ofReplicas(n: unknown, of: unknown): string {
  return n === undefined || n === null ? "" : `${shown(n)}/${shown(of)}`;
}

function total(status: EventStatus, key: keyof ReportCounts): number {
  return status.clusters.reduce((sum, c) => sum + (countOf(c.counts?.[key]) ?? 0), 0);
}

/** Deployments restarted over every cluster (the Action's `restarted` output). */
export function restartedTotal(status: EventStatus): number {
  return total(status, "restarted");
}

/** Deployments a DRY_RUN worker matched and did not restart, over every cluster. */
export function dryRunTotal(status: EventStatus): number {
  return total(status, "dry_run");
}

/**
 * Why an event ended `skipped`, as the Action says it: the named Deployments'
 * reasons counted, most frequent first (at most five, each cut at 60
 * characters), then those only counted: e.g. "2 paused, 1 opted_out".
 */
export function skippedSummary(status: EventStatus): string {
  const named = status.clusters.flatMap((c) => c.deployments ?? [])
    .filter((d) => d.result === "skipped")
    .map((d) => {
      const reason = shown(d.reason);
      return reason === "" ? "no reason given" : [...reason].slice(0, 60).join("");
    });
  const groups = new Map<string, number>();
  for (const reason of named.toSorted()) groups.set(reason, (groups.get(reason) ?? 0) + 1);
  const sorted = [...groups].sort((a, b) => b[1] - a[1]);
  const parts = sorted.slice(0, 5).map(([reason, n]) => `${n} ${reason}`);
  if (sorted.length > 5) {
    parts.push(`${sorted.slice(5).reduce((sum, [, n]) => sum + n, 0)} other`);
  }
  const unnamed = total(status, "skipped") - named.length;
  if (unnamed > 0) parts.push(`${unnamed} not named`);
  return inertText(parts.join(", "));
}

/** The heading, the one-line totals and web's reason (when it gives one), unescaped. */
export function statusHeadline(status: EventStatus, options: TableOptions = {}): string[] {
  const state = options.timedOut ? `timed out while ${status.state}` : status.state;
  const tags = Array.isArray(status.tags) ? status.tags.map(shown).join(", ") : "";
  const lines = [
    `kuberollouttrigger: ${state}`,
    `Event ${shown(status.id)} for ${shown(status.image)} (tags ${tags}): ` +
    `${total(status, "restarted")} restarted, ${total(status, "skipped")} skipped, ` +
    `${total(status, "failed")} failed; rollouts: ${total(status, "complete")} complete, ` +
    `${total(status, "progressing")} progressing, ${total(status, "rollout_failed")} failed`,
  ];
  const reason = shown(status.reason);
  if (reason !== "") lines.push(`Reason: ${reason}`);
  return lines;
}

/**
 * One row per named Deployment, one per cluster without any, one for those
 * only counted; cells as the server gave them (the renderers make them inert).
 */
export function statusRows(status: EventStatus): string[][] {
  const rows: unknown[][] = [];
  for (const c of status.clusters) {
    const deployments = c.deployments ?? [];
    const omitted = countOf(c.omitted) ?? 0;
    if (deployments.length === 0 && omitted === 0) {
      const reason = shown(c.reason);
      rows.push([
        c.cluster,
        c.state,
        "",
        "",
        "",
        "",
        "",
        "",
        reason !== "" ? reason : NOTES[shown(c.state)] ?? "",
      ]);
      continue;
    }
    for (const d of deployments) {
      const r = d.rollout ?? {} as Partial<NonNullable<typeof d.rollout>>;
      rows.push([
        c.cluster,
        c.state,
        `${shown(d.namespace)}/${shown(d.name)}`,
        d.result,
        r.state,
        ofReplicas(r.updated, r.replicas),
        ofReplicas(r.ready, r.replicas),
        ofReplicas(r.available, r.replicas),
        [d.reason, r.reason].map(shown).filter((x) => x !== "").join("; "),
      ]);
    }
    if (omitted > 0) {
      rows.push([
        c.cluster,
        c.state,
        `… ${omitted} more`,
        "",
        "",
        "",
        "",
        "",
        "counted, not listed",
      ]);
    }
  }
  return rows.map((row) => row.map(shown));
}

/** The job summary's Markdown, byte for byte what action.yml writes. */
export function renderStatusMarkdown(status: EventStatus, options: TableOptions = {}): string {
  const [heading, ...paragraphs] = statusHeadline(status, options);
  const row = (cells: readonly string[]) => `| ${cells.map(markdownText).join(" | ")} |`;
  const rows = statusRows(status);
  const rest = rows.length > MAX_ROWS
    ? ["", markdownText(`… ${rows.length - MAX_ROWS} more rows not shown`)]
    : [];
  return [
    // The heading's fixed words need no escaping; the state after them does.
    `### kuberollouttrigger: ${markdownText(heading.slice("kuberollouttrigger: ".length))}`,
    "",
    ...paragraphs.flatMap((p) => [markdownText(p), ""]),
    row(STATUS_COLUMNS),
    `|${STATUS_COLUMNS.map(() => "---").join("|")}|`,
    ...rows.slice(0, MAX_ROWS).map(row),
    ...rest,
  ].join("\n") + "\n";
}

/** The same table for a terminal: aligned columns, no Markdown, nothing a terminal interprets. */
export function renderStatusText(status: EventStatus, options: TableOptions = {}): string {
  const [heading, ...paragraphs] = statusHeadline(status, options).map(inertText);
  const all = statusRows(status);
  const rows = [[...STATUS_COLUMNS], ...all.slice(0, MAX_ROWS).map((r) => r.map(inertText))];
  const widths = STATUS_COLUMNS.map((_, i) => Math.max(...rows.map((r) => [...r[i]].length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => cell + " ".repeat(widths[i] - [...cell].length)).join("  ").trimEnd();
  const rest = all.length > MAX_ROWS ? [`… ${all.length - MAX_ROWS} more rows not shown`] : [];
  return [heading, ...paragraphs, "", ...rows.map(line), ...rest].join("\n") + "\n";
}
