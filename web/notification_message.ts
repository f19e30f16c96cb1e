/**
 * What web's webhook notification says once an event's outcome is final
 * (web/notification_signature.ts signs it; config/notify_targets.ts reads
 * where it goes). Pure: the sender owns HTTP, retries and the clock.
 *
 * Trust: the status folds cluster reports read from Valkey, which anyone with
 * its password can write, so every string in it (cluster names, reasons,
 * Deployment names) is hostile. Each is cut, made one line without control or
 * bidi characters, and for Slack escaped; the body is bounded. The audit
 * fields are public claims of the workflow run's token, never the token.
 * NOTIFY_URLS may hold secrets (Slack's webhook path, a key in a query):
 * errors name an entry by position only, and only its label is ever logged.
 *
 * JSON body (format "json"; snake_case as GET /event/<id> answers; `?` marks
 * a member left out when absent):
 *   {"event_id", "state", "image", "tags": [...], "time" (when web published),
 *    "repository", "repository_id", "ref"?, "sha"?, "workflow_ref"?,
 *    "run_id"?, "run_attempt"?, "actor"?,
 *    "clusters": [{"cluster", "state", "reason"?, "matched", "counts"?,
 *      "updated"?, "deployments": [{"namespace", "name", "result", "reason"?,
 *        "rollout"?: {"state", "reason"?, "replicas", "updated", "ready",
 *        "available"}}], "omitted"}],
 *    "omitted_clusters", "reason"?}
 * At most MAX_NOTIFICATION_BYTES: when the reports would not fit, the clusters
 * with the most listed Deployments lose their last ones first (reports list
 * failures first), counted in their `omitted`; when even clusters without
 * Deployments would not fit, whole clusters are left out, failing ones kept
 * first, counted in `omitted_clusters`.
 *
 * Slack body (format "slack"): {"text": …}, a headline, web's reason, then one
 * line per cluster (failing first), at most MAX_SLACK_CHARS characters.
 */

import {
  type ClusterStatus,
  type DeploymentReport,
  emptyCounts,
  type EventStatus,
  MAX_REPORTED_DEPLOYMENTS,
  type ReportCounts,
} from "../shared/event_status.ts";

/** The audit fields of the workflow run that sent the event (public claims; never a token). */
export interface NotificationAudit {
  repository: string;
  repositoryId: string;
  ref?: string;
  sha?: string;
  workflowRef?: string;
  runId?: string;
  runAttempt?: string;
  actor?: string;
}

/** What the receiver expects: our JSON, or Slack's incoming-webhook {"text": …}. */
export type NotificationFormat = "json" | "slack";

/** Most bytes of a JSON or Slack body. */
export const MAX_NOTIFICATION_BYTES = 64 * 1024;
/** Most characters of a Slack message's text. */
export const MAX_SLACK_CHARS = 3000;
const MAX_TEXT = 300;
const MAX_TAG = 128; // the OCI grammar's longest tag
const MAX_TAGS = 64; // as many as a status binding holds
const SLACK_REASON = 200;
const SLACK_CLUSTERS = 20;
const FAILING = new Set(["failed", "expired", "no_report"]);
// C0 and C1 controls, DEL, line and paragraph separators, bidi overrides and isolates.
// deno-lint-ignore no-control-regex
const INVISIBLE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const encoder = new TextEncoder();
const COUNT_NAMES = Object.keys(emptyCounts()) as (keyof ReportCounts)[];

type Json = Record<string, unknown>;

/** One line of at most `max` characters: invisible characters become spaces, lone surrogates U+FFFD. */
function clip(value: unknown, max = MAX_TEXT): string {
  if (typeof value !== "string") return "";
  const chars = [...value.toWellFormed().replace(INVISIBLE, " ")];
  return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : chars.join("");
}

function setText(target: Json, key: string, value: unknown): void {
  if (typeof value === "string") target[key] = clip(value);
}

/** A count as the status holds it; anything else (only a forged status) reads 0. */
function count(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

function byteLength(text: string): number {
  return encoder.encode(text).length;
}

/** Failing clusters first, else the status's order: what a reader needs when not all fit. */
function byPriority<T>(items: readonly T[], state: (item: T) => string): T[] {
  return items.filter((c) => FAILING.has(state(c)))
    .concat(items.filter((c) => !FAILING.has(state(c))));
}

/** The body for one final status: JSON (default) or Slack's {"text": …}; at most 64 KiB. */
export function notificationBody(
  status: EventStatus,
  audit: NotificationAudit,
  format: NotificationFormat,
): string {
  return format === "slack" ? slackBody(status, audit) : jsonBody(status, audit);
}

// ---- JSON ------------------------------------------------------------------

/**
 * The members before `clusters`. Bounded by construction (at most 4 bytes per
 * character once inert): image, time, id and state 4 × 1.2 KB, 64 tags × 0.5
 * KB, 8 audit fields × 1.2 KB, reason 1.2 KB: under 50 KB, so a body without
 * clusters always fits.
 */
function headJson(status: EventStatus, audit: NotificationAudit): Json {
  const head: Json = {
    event_id: clip(status.id),
    state: clip(status.state),
    image: clip(status.image),
    tags: (Array.isArray(status.tags) ? status.tags : []).slice(0, MAX_TAGS)
      .map((t) => clip(t, MAX_TAG)),
    time: clip(status.time),
    repository: clip(audit.repository),
    repository_id: clip(audit.repositoryId),
  };
  setText(head, "ref", audit.ref);
  setText(head, "sha", audit.sha);
  setText(head, "workflow_ref", audit.workflowRef);
  setText(head, "run_id", audit.runId);
  setText(head, "run_attempt", audit.runAttempt);
  setText(head, "actor", audit.actor);
  return head;
}

function deploymentJson(d: DeploymentReport): Json {
  const out: Json = { namespace: clip(d.namespace), name: clip(d.name), result: clip(d.result) };
  setText(out, "reason", d.reason);
  if (d.rollout) {
    const rollout: Json = { state: clip(d.rollout.state) };
    setText(rollout, "reason", d.rollout.reason);
    for (const k of ["replicas", "updated", "ready", "available"] as const) {
      rollout[k] = count(d.rollout[k]);
    }
    out.rollout = rollout;
  }
  return out;
}

/** The known counts only, in the status's order. */
function countsJson(counts: ReportCounts): Json {
  const out: Json = {};
  for (const k of COUNT_NAMES) out[k] = count(counts[k]);
  return out;
}

/** One cluster, its members before `deployments` serialised; its Deployments only when needed. */
interface ClusterPiece {
  /** Its place in the status. */
  at: number;
  prefix: string;
  /** Bytes of the cluster without Deployments, and its comma; at least clusterText(p, 0)'s. */
  bareBytes: number;
  listed: readonly DeploymentReport[];
  /** Each listed Deployment's JSON, once serialised. */
  texts: string[];
  /** Deployments the status only counts. */
  omitted: number;
}

function clusterPiece(c: ClusterStatus, at: number): ClusterPiece {
  const head: Json = { cluster: clip(c.cluster), state: clip(c.state) };
  setText(head, "reason", c.reason);
  head.matched = count(c.matched);
  if (c.counts) head.counts = countsJson(c.counts);
  setText(head, "updated", c.updated);
  const all = Array.isArray(c.deployments) ? c.deployments : [];
  const listed = all.slice(0, MAX_REPORTED_DEPLOYMENTS);
  const omitted = count(c.omitted) + all.length - listed.length;
  const prefix = JSON.stringify(head).slice(0, -1);
  // `,"deployments":[` `],"omitted":` `}` and a comma: 30 bytes, plus the most digits omitted can have.
  const bareBytes = byteLength(prefix) + 30 + String(omitted + listed.length).length;
  return { at, prefix, bareBytes, listed, texts: [], omitted };
}

function deploymentText(p: ClusterPiece, index: number): string {
  return p.texts[index] ??= JSON.stringify(deploymentJson(p.listed[index]));
}

function clusterText(p: ClusterPiece, keep: number): string {
  const kept = p.listed.slice(0, keep).map((_, i) => deploymentText(p, i));
  const omitted = p.omitted + p.listed.length - kept.length;
  return `${p.prefix},"deployments":[${kept.join(",")}],"omitted":${omitted}}`;
}

/**
 * How many Deployments each cluster may list within `budget` bytes: one more
 * per cluster a round, in priority order, so the clusters with the most lose
 * their last ones first and a failing cluster gets the last round's room.
 * Serialises only what it measures: what fits and one more.
 */
function deploymentsThatFit(pieces: readonly ClusterPiece[], budget: number): number[] {
  const keep = pieces.map(() => 0);
  let left = budget;
  for (let k = 0; k < MAX_REPORTED_DEPLOYMENTS; k++) {
    for (const [i, p] of pieces.entries()) {
      if (k >= p.listed.length) continue;
      left -= byteLength(deploymentText(p, k)) + 1;
      if (left < 0) return keep;
      keep[i] = k + 1;
    }
  }
  return keep;
}

function jsonBody(status: EventStatus, audit: NotificationAudit): string {
  const all = Array.isArray(status.clusters) ? status.clusters : [];
  const pieces = byPriority(all.map(clusterPiece), (p) => all[p.at].state);
  const head = JSON.stringify(headJson(status, audit)).slice(0, -1);
  const reason = typeof status.reason === "string"
    ? `,"reason":${JSON.stringify(clip(status.reason))}`
    : "";
  const render = (keep: number[]) => {
    // The kept clusters go out in the status's order, not by priority.
    const kept = keep.map((k, i) => ({ p: pieces[i], k })).sort((a, b) => a.p.at - b.p.at)
      .map(({ p, k }) => clusterText(p, k));
    const omitted = pieces.length - keep.length;
    return `${head},"clusters":[${kept.join(",")}],"omitted_clusters":${omitted}${reason}}`;
  };
  // Clusters in priority order while they fit bare, then their Deployments in what is left.
  let left = MAX_NOTIFICATION_BYTES - byteLength(render([]));
  let n = 0;
  for (; n < pieces.length && pieces[n].bareBytes <= left; n++) left -= pieces[n].bareBytes;
  return render(deploymentsThatFit(pieces.slice(0, n), left));
}

// ---- Slack -----------------------------------------------------------------

/**
 * Text for Slack's mrkdwn, cut before escaping so an entity is never split.
 * Security: `& < >` as entities (Slack's documented escaping), so no
 * `<url|label>` link, `<!channel>` mention or `<@user>` can be formed; `://`
 * broken by a zero-width space so a bare scheme URL is not auto-linked.
 */
function slackText(value: unknown, max = MAX_TEXT): string {
  return clip(value, max).replaceAll("&", "&amp;").replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;").replaceAll("://", ":\u200b//");
}

function slackHeadline(status: EventStatus, audit: NotificationAudit): string {
  const tags = Array.isArray(status.tags) ? status.tags : [];
  const shownTags = tags.slice(0, 3).map((t) => slackText(t, MAX_TAG)).join(",");
  const more = tags.length > 3 ? ` +${tags.length - 3}` : "";
  const image = slackText(status.image) + (shownTags ? `:${shownTags}${more}` : "");
  const attempt = audit.runAttempt && audit.runAttempt !== "1"
    ? ` attempt ${slackText(audit.runAttempt, 20)}`
    : "";
  const run = audit.runId ? `, run ${slackText(audit.runId, 40)}${attempt}` : "";
  return `kuberollouttrigger: ${image} ${slackText(status.state, 40)} (${
    slackText(audit.repository)
  }${run})`;
}

/** "1 of 2 restarted, 1 rollout failed": the counts a reader acts on; "" without a report. */
function countsPhrase(c: ClusterStatus): string {
  if (!c.counts) return "";
  const n = (k: keyof ReportCounts) => count(c.counts?.[k]);
  const parts = [`${n("restarted")} of ${count(c.matched)} restarted`];
  if (n("failed")) parts.push(`${n("failed")} failed to restart`);
  if (n("rollout_failed")) {
    parts.push(`${n("rollout_failed")} rollout${n("rollout_failed") > 1 ? "s" : ""} failed`);
  }
  if (n("progressing")) parts.push(`${n("progressing")} rolling out`);
  if (n("skipped")) parts.push(`${n("skipped")} skipped`);
  if (n("dry_run")) parts.push(`${n("dry_run")} dry run`);
  return parts.join(", ");
}

/** The cluster's own reason, else the first failing Deployment's (`ns/name: why`). */
function clusterReason(c: ClusterStatus): string {
  if (typeof c.reason === "string" && c.reason !== "") return c.reason;
  const bad = (Array.isArray(c.deployments) ? c.deployments : []).find((d) =>
    d.result === "failed" || d.rollout?.state === "failed" || d.rollout?.state === "timed_out"
  );
  if (!bad) return "";
  const why = bad.reason ?? bad.rollout?.reason ?? bad.rollout?.state ?? bad.result;
  return `${clip(bad.namespace)}/${clip(bad.name)}: ${clip(why)}`;
}

function clusterLine(c: ClusterStatus): string {
  const phrase = countsPhrase(c);
  const reason = clusterReason(c);
  return `• ${slackText(c.cluster, 100)}: ${slackText(c.state, 40)}` +
    (phrase ? ` — ${phrase}` : "") + (reason ? ` (${slackText(reason, SLACK_REASON)})` : "");
}

/** At most `max` UTF-16 units (what Slack counts, or more), never splitting a surrogate pair. */
function cutChars(text: string, max: number): string {
  if (text.length <= max) return text;
  let out = "";
  for (const ch of text) {
    if (out.length + ch.length > max - 1) break;
    out += ch;
  }
  return out + "…";
}

function slackBody(status: EventStatus, audit: NotificationAudit): string {
  const lines = [slackHeadline(status, audit)];
  if (typeof status.reason === "string") lines.push(`Reason: ${slackText(status.reason, 200)}`);
  const clusters = byPriority(
    Array.isArray(status.clusters) ? status.clusters : [],
    (c) => c.state,
  );
  const room = MAX_SLACK_CHARS - 40; // keeps room for the "… and N more" line
  let shown = 0;
  for (const c of clusters.slice(0, SLACK_CLUSTERS)) {
    const line = clusterLine(c);
    if (lines.join("\n").length + 1 + line.length > room) break;
    lines.push(line);
    shown++;
  }
  if (shown < clusters.length) lines.push(`… and ${clusters.length - shown} more clusters`);
  return JSON.stringify({ text: cutChars(lines.join("\n"), MAX_SLACK_CHARS) });
}
