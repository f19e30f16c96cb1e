/**
 * The rollout-feedback record of one event (SPEC §12): where it lives in
 * Valkey, what web writes (the binding), what each worker cluster writes (its
 * report), and the answer web gives (web/status_summary.ts folds them into it). Both sides read records
 * back from Valkey, which anyone with its password can write: every record is
 * parsed strictly and bounded here, and parse errors never quote the record.
 */

import { AppError } from "./errors.ts";
import { productKey } from "./valkey_keys.ts";
import { KEY_ID, REPOSITORY, SIGNATURE } from "./event_signature.ts";
import { jsonErrorPosition } from "../lib/error_text.ts";
import { type JsonValue, parseStrictJson } from "../lib/strict_json.ts";

/** Key of one event's record: a hash with the binding and one field per cluster. */
export function statusKey(eventId: string): string {
  return productKey("event-status", eventId);
}
/** The hash field web writes; workers never write it. */
export const BINDING_FIELD = "binding";
/**
 * The hash field where web names the known clusters whose heartbeat was not
 * live when it published (a JSON list): they handle the event when they
 * return within their catch-up window. Older web versions ignore it.
 */
export const UNREACHABLE_FIELD = "unreachable";
/** The hash field of one cluster's report. */
export function reportField(cluster: string): string {
  return `cluster:${cluster}`;
}
/**
 * Sorted set of known clusters: member the cluster name, score its last
 * heartbeat (ms). Web counts a member as known until CLUSTER_FORGET_AFTER and
 * as live within CLUSTER_LIVE_MS.
 */
export const CLUSTERS_KEY = productKey("clusters");
/** A cluster is live while its last heartbeat is at most this old. */
export const CLUSTER_LIVE_MS = 30_000;
/** How often each worker replica refreshes its cluster's heartbeat. */
export const HEARTBEAT_INTERVAL_MS = 10_000;
/** The channel on which workers announce that an event's record changed (payload: the id). */
export function statusChannel(eventChannel: string): string {
  return `${eventChannel}:status`;
}
/** Most Deployments one cluster report names; the rest are only counted. */
export const MAX_REPORTED_DEPLOYMENTS = 50;

/** What happened to one matched Deployment when the worker acted on the event. */
export type RestartResult = "restarted" | "skipped" | "failed" | "dry_run";
/**
 * Where a restarted Deployment's rollout stands (kubectl rollout status' reading);
 * `baking`: rolled out, and staying healthy for the bake time before it is complete.
 */
export type RolloutState =
  | "progressing"
  | "baking"
  | "complete"
  | "failed"
  | "timed_out"
  | "unknown";
/**
 * One cluster's state for the event. `dry_run`: a DRY_RUN worker matched
 * Deployments and restarted none; `skipped`: Deployments run the image but
 * every one was skipped (paused, opted out, digest-pinned); `no_match`:
 * nothing here runs it.
 */
export type ClusterState =
  | "in_progress"
  | "succeeded"
  | "failed"
  | "no_match"
  | "skipped"
  | "dry_run"
  | "expired";
/** What web says of a cluster: its own state, or that it has not (yet) reported. */
export type ClusterAnswer = ClusterState | "pending" | "no_report";
/** Every overall state web answers: web's metrics, the CLI and the Action's tests read this list. */
export const OVERALL_STATES = [
  "pending",
  "in_progress",
  "succeeded",
  "failed",
  "no_match",
  "skipped",
  "dry_run",
] as const;
/** The event's overall state (web/status_summary.ts says how clusters fold into it). */
export type OverallState = typeof OVERALL_STATES[number];
/** The overall states that end an event (all but the two that wait): the answer no longer changes by itself. */
export const FINAL_OVERALL_STATES: readonly OverallState[] = OVERALL_STATES.filter((s) =>
  s !== "pending" && s !== "in_progress"
);

/** Replica counts of a rollout, as the Deployment's status gives them. */
export interface ReplicaCounts {
  replicas: number;
  updated: number;
  ready: number;
  available: number;
}

/** Progress of one restarted Deployment's rollout. */
export interface RolloutReport extends ReplicaCounts {
  state: RolloutState;
  /** Short reason for failed or timed_out (e.g. ProgressDeadlineExceeded). */
  reason?: string;
}

/** One Deployment in a cluster report. */
export interface DeploymentReport {
  namespace: string;
  name: string;
  result: RestartResult;
  /** Why it was skipped or failed (a short tag or one line written by the worker). */
  reason?: string;
  rollout?: RolloutReport;
}

/** Totals over every matched Deployment, named or not. */
export interface ReportCounts {
  restarted: number;
  skipped: number;
  failed: number;
  dry_run: number;
  complete: number;
  progressing: number;
  rollout_failed: number;
}

/** What one worker cluster writes for an event. */
export interface ClusterReport {
  cluster: string;
  state: ClusterState;
  /** Deployments that use the event's image (restarted, skipped or failed). */
  matched: number;
  counts: ReportCounts;
  /** At most MAX_REPORTED_DEPLOYMENTS, failures first. */
  deployments: DeploymentReport[];
  /** Matched Deployments not named in `deployments`. */
  omitted: number;
  /** When the report was last written (RFC 3339). */
  updated: string;
  /** Why the cluster failed or expired the event beyond its Deployments (one line). */
  reason?: string;
}

/** What web writes when it publishes: who may read the record, and what was sent. */
export interface StatusBinding {
  /** sha256 of the posting repository's `repository_id` claim (hex), never the claim itself. */
  repository: string;
  image: string;
  tags: string[];
  /** When web published the event (RFC 3339). */
  time: string;
  /** Clusters whose heartbeat was live when web published. */
  clusters: string[];
  /** Id of web's key, when web signs (shared/event_signature.ts): with `sig`, or neither. */
  kid?: string;
  /** Web's signature over the event id and the fields above but `clusters`. */
  sig?: string;
  /**
   * Web's signature (same `kid`) over the event id and `clusters`, written when
   * reports are signed: the list of clusters an event waits for is then web's.
   */
  csig?: string;
}

/** The answer of GET /event/<id>. */
export interface EventStatus {
  id: string;
  state: OverallState;
  final: boolean;
  image: string;
  tags: string[];
  time: string;
  clusters: ClusterStatus[];
  /** Why the event failed when no cluster is there to say it. */
  reason?: string;
}

/** One cluster in the answer. */
export interface ClusterStatus {
  cluster: string;
  state: ClusterAnswer;
  matched: number;
  counts?: ReportCounts;
  deployments: DeploymentReport[];
  omitted: number;
  updated?: string;
  /** Why web judged the cluster itself (no_report, an unreadable report). */
  reason?: string;
}

const CLUSTER_NAME = /^[A-Za-z0-9._-]{1,63}$/;
const KUBE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const SHORT_TEXT = 300;
const RESTART_RESULTS: readonly RestartResult[] = ["restarted", "skipped", "failed", "dry_run"];
const ROLLOUT_STATES: readonly RolloutState[] = [
  "progressing",
  "baking",
  "complete",
  "failed",
  "timed_out",
  "unknown",
];
const CLUSTER_STATES: readonly ClusterState[] = [
  "in_progress",
  "succeeded",
  "failed",
  "no_match",
  "skipped",
  "dry_run",
  "expired",
];
const COUNT_NAMES: readonly (keyof ReportCounts)[] = [
  "restarted",
  "skipped",
  "failed",
  "dry_run",
  "complete",
  "progressing",
  "rollout_failed",
];

/** Thrown when a stored record is not of the shape written by our code. */
function corrupt(what: string, detail: string): AppError {
  return new AppError("ERR_STATUS_CORRUPT", `${what} is not a valid record: ${detail}`);
}

type Obj = Record<string, JsonValue>;

function readJson(text: string, what: string): Obj {
  let value: JsonValue;
  try {
    value = parseStrictJson(text);
  } catch (err) {
    // Security: the record is untrusted; say where it broke, never what it says.
    throw corrupt(what, `not JSON${jsonErrorPosition(err)}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw corrupt(what, "not an object");
  }
  return value;
}

function onlyKeys(obj: Obj, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) throw corrupt(what, "unknown member");
  }
}

function text(obj: Obj, key: string, what: string, pattern?: RegExp): string {
  const v = obj[key];
  if (typeof v !== "string" || v.length > SHORT_TEXT || (pattern && !pattern.test(v))) {
    throw corrupt(what, `${key} is not a valid string`);
  }
  return v;
}

function optionalText(obj: Obj, key: string, what: string): string | undefined {
  return obj[key] === undefined ? undefined : text(obj, key, what);
}

function count(obj: Obj, key: string, what: string): number {
  const v = obj[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw corrupt(what, `${key} is not a count`);
  }
  return v;
}

function oneOf<T extends string>(obj: Obj, key: string, allowed: readonly T[], what: string): T {
  const v = obj[key];
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
    throw corrupt(what, `${key} is not one of ${allowed.join(", ")}`);
  }
  return v as T;
}

function object(value: JsonValue | undefined, what: string): Obj {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw corrupt(what, "not an object");
  }
  return value;
}

function array(value: JsonValue | undefined, max: number, what: string): JsonValue[] {
  if (!Array.isArray(value) || value.length > max) throw corrupt(what, "not a bounded list");
  return value;
}

function readRollout(value: JsonValue | undefined): RolloutReport {
  const what = "rollout";
  const obj = object(value, what);
  onlyKeys(obj, ["state", "reason", "replicas", "updated", "ready", "available"], what);
  const rollout: RolloutReport = {
    state: oneOf(obj, "state", ROLLOUT_STATES, what),
    replicas: count(obj, "replicas", what),
    updated: count(obj, "updated", what),
    ready: count(obj, "ready", what),
    available: count(obj, "available", what),
  };
  const reason = optionalText(obj, "reason", what);
  if (reason !== undefined) rollout.reason = reason;
  return rollout;
}

function readDeployment(value: JsonValue): DeploymentReport {
  const what = "deployment";
  const obj = object(value, what);
  onlyKeys(obj, ["namespace", "name", "result", "reason", "rollout"], what);
  const report: DeploymentReport = {
    namespace: text(obj, "namespace", what, KUBE_NAME),
    name: text(obj, "name", what, KUBE_NAME),
    result: oneOf(obj, "result", RESTART_RESULTS, what),
  };
  const reason = optionalText(obj, "reason", what);
  if (reason !== undefined) report.reason = reason;
  if (obj.rollout !== undefined) report.rollout = readRollout(obj.rollout);
  return report;
}

function readCounts(value: JsonValue | undefined): ReportCounts {
  const what = "counts";
  const obj = object(value, what);
  onlyKeys(obj, COUNT_NAMES, what);
  const counts = {} as ReportCounts;
  for (const name of COUNT_NAMES) counts[name] = count(obj, name, what);
  return counts;
}

/** Reads a cluster report back from Valkey; throws ERR_STATUS_CORRUPT. */
export function parseClusterReport(raw: string): ClusterReport {
  const what = "cluster report";
  const obj = readJson(raw, what);
  onlyKeys(
    obj,
    ["cluster", "state", "matched", "counts", "deployments", "omitted", "updated", "reason"],
    what,
  );
  const report: ClusterReport = {
    cluster: text(obj, "cluster", what, CLUSTER_NAME),
    state: oneOf(obj, "state", CLUSTER_STATES, what),
    matched: count(obj, "matched", what),
    counts: readCounts(obj.counts),
    deployments: array(obj.deployments, MAX_REPORTED_DEPLOYMENTS, what).map(readDeployment),
    omitted: count(obj, "omitted", what),
    updated: text(obj, "updated", what),
  };
  const reason = optionalText(obj, "reason", what);
  if (reason !== undefined) report.reason = reason;
  return report;
}

/** Reads web's list of clusters that were not live at publishing; throws ERR_STATUS_CORRUPT. */
export function parseUnreachable(raw: string): string[] {
  const what = "unreachable list";
  let value: JsonValue;
  try {
    value = parseStrictJson(raw);
  } catch (err) {
    throw corrupt(what, `not JSON${jsonErrorPosition(err)}`);
  }
  return array(value, 1000, what).map((v) => {
    if (typeof v !== "string" || !CLUSTER_NAME.test(v)) throw corrupt(what, "not a cluster name");
    return v;
  });
}

/** Reads web's binding back from Valkey; throws ERR_STATUS_CORRUPT. */
export function parseBinding(raw: string): StatusBinding {
  const what = "status binding";
  const obj = readJson(raw, what);
  onlyKeys(obj, ["repository", "image", "tags", "time", "clusters", "kid", "sig", "csig"], what);
  const strings = (key: string, max: number, pattern?: RegExp) =>
    array(obj[key], max, what).map((v) => {
      if (typeof v !== "string" || v.length > SHORT_TEXT || (pattern && !pattern.test(v))) {
        throw corrupt(what, `${key} holds an invalid entry`);
      }
      return v;
    });
  const binding: StatusBinding = {
    repository: text(obj, "repository", what, REPOSITORY),
    image: text(obj, "image", what),
    tags: strings("tags", 64),
    time: text(obj, "time", what),
    clusters: strings("clusters", 1000, CLUSTER_NAME),
  };
  if ((obj.kid === undefined) !== (obj.sig === undefined)) {
    throw corrupt(what, "kid and sig come together");
  }
  if (obj.kid !== undefined) {
    binding.kid = text(obj, "kid", what, KEY_ID);
    binding.sig = text(obj, "sig", what, SIGNATURE);
  }
  if (obj.csig !== undefined) {
    if (binding.kid === undefined) throw corrupt(what, "csig comes with kid and sig");
    binding.csig = text(obj, "csig", what, SIGNATURE);
  }
  return binding;
}

/** Counts of a report's Deployments, for a worker building one. */
export function emptyCounts(): ReportCounts {
  return {
    restarted: 0,
    skipped: 0,
    failed: 0,
    dry_run: 0,
    complete: 0,
    progressing: 0,
    rollout_failed: 0,
  };
}

/**
 * A cluster's state from its Deployments: in progress while any rollout is
 * (baking included), then failed when any restart or rollout failed (or timed
 * out); with nothing restarted, dry_run when a DRY_RUN worker would have
 * restarted some, skipped when Deployments use the image's tags (`matched`)
 * and every one was skipped, else no_match (a digest-pinned Deployment is
 * skipped but not matched); otherwise succeeded. Nothing restarted is never
 * succeeded.
 */
export function clusterStateOf(counts: ReportCounts, matched: number): ClusterState {
  if (counts.progressing > 0) return "in_progress";
  if (counts.failed > 0 || counts.rollout_failed > 0) return "failed";
  if (counts.restarted > 0) return "succeeded";
  if (counts.dry_run > 0) return "dry_run";
  return matched > 0 && counts.skipped > 0 ? "skipped" : "no_match";
}
