/**
 * The table of an event's status (SPEC §12) that `deno task trigger --wait`
 * prints, row for row the one action.yml writes to the job summary with jq:
 * same heading, same columns, same cells. The status comes from web, whose
 * reports come from Valkey, which anyone with its password can write: every
 * cell is reduced to one line without control characters, and the Markdown
 * form escapes what would change the table or inject HTML.
 */

import type { EventStatus } from "../shared/event_status.ts";

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

/** What the table says besides the status itself. */
export interface TableOptions {
  /** The caller gave up waiting before the state was final. */
  timedOut?: boolean;
}

const NOTES: Record<string, string> = {
  pending: "waiting for its report",
  no_report: "no report: the cluster did not answer in time",
  no_match: "nothing here runs the image",
};

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/g;

function plain(value: unknown): string {
  return String(value).replace(CONTROL, " ");
}

function ofReplicas(n: number | undefined, of: number | undefined): string {
  return n === undefined ? "" : `${n}/${of}`;
}

function total(status: EventStatus, key: keyof NonNullable<EventStatus["clusters"][0]["counts"]>) {
  return status.clusters.reduce((sum, c) => sum + (c.counts?.[key] ?? 0), 0);
}

/** Deployments restarted over every cluster (the Action's `restarted` output). */
export function restartedTotal(status: EventStatus): number {
  return total(status, "restarted");
}

/** The heading, the one-line totals and web's reason (when it gives one) above the table. */
export function statusHeadline(status: EventStatus, options: TableOptions = {}): string[] {
  const state = options.timedOut ? `timed out while ${status.state}` : status.state;
  const lines = [
    `kuberollouttrigger: ${state}`,
    `Event ${status.id} for ${status.image} (tags ${status.tags.join(", ")}): ` +
    `${total(status, "restarted")} restarted, ${total(status, "skipped")} skipped, ` +
    `${total(status, "failed")} failed; rollouts: ${total(status, "complete")} complete, ` +
    `${total(status, "progressing")} progressing, ${total(status, "rollout_failed")} failed`,
  ];
  if (status.reason) lines.push(`Reason: ${status.reason}`);
  return lines.map(plain);
}

/** One row per named Deployment, one per cluster without any, one for those only counted. */
export function statusRows(status: EventStatus): string[][] {
  const rows: string[][] = [];
  for (const c of status.clusters) {
    if (c.deployments.length === 0 && c.omitted === 0) {
      rows.push([c.cluster, c.state, "", "", "", "", "", "", c.reason ?? NOTES[c.state] ?? ""]);
      continue;
    }
    for (const d of c.deployments) {
      const r = d.rollout;
      rows.push([
        c.cluster,
        c.state,
        `${d.namespace}/${d.name}`,
        d.result,
        r?.state ?? "",
        ofReplicas(r?.updated, r?.replicas),
        ofReplicas(r?.ready, r?.replicas),
        ofReplicas(r?.available, r?.replicas),
        [d.reason, r?.reason].filter((x) => x !== undefined && x !== "").join("; "),
      ]);
    }
    if (c.omitted > 0) {
      rows.push([
        c.cluster,
        c.state,
        `… ${c.omitted} more`,
        "",
        "",
        "",
        "",
        "",
        "counted, not listed",
      ]);
    }
  }
  return rows.map((row) => row.map(plain));
}

function markdownCell(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/\|/g, "\\|");
}

/** The job summary's Markdown, byte for byte what action.yml writes. */
export function renderStatusMarkdown(status: EventStatus, options: TableOptions = {}): string {
  const [heading, ...paragraphs] = statusHeadline(status, options).map(markdownCell);
  const row = (cells: readonly string[]) => `| ${cells.map(markdownCell).join(" | ")} |`;
  return [
    `### ${heading}`,
    "",
    ...paragraphs.flatMap((p) => [p, ""]),
    row(STATUS_COLUMNS),
    `|${STATUS_COLUMNS.map(() => "---").join("|")}|`,
    ...statusRows(status).map(row),
  ].join("\n") + "\n";
}

/** The same table for a terminal: aligned columns, no Markdown. */
export function renderStatusText(status: EventStatus, options: TableOptions = {}): string {
  const [heading, ...paragraphs] = statusHeadline(status, options);
  const rows = [[...STATUS_COLUMNS], ...statusRows(status)];
  const widths = STATUS_COLUMNS.map((_, i) => Math.max(...rows.map((r) => [...r[i]].length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => cell + " ".repeat(widths[i] - [...cell].length)).join("  ").trimEnd();
  return [heading, ...paragraphs, "", ...rows.map(line)].join("\n") + "\n";
}
