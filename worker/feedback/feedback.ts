/**
 * Rollout feedback on the worker side (SPEC §12): takes what the event handler
 * did to each Deployment, follows the restarted ones' rollouts through the
 * tracker, and writes the cluster's report (coalesced, retried) into the
 * event's status record; persists what a restarted worker needs to resume.
 * With ROLLOUT_TIMEOUT 0 nothing is tracked: restarted Deployments carry no
 * rollout and the report is final at once. ROLLOUT_BAKE_TIME (and the
 * Deployments' bake-time annotation) make a rollout bake before it is complete.
 */

import { describeError } from "../../lib/error_text.ts";
import type { DeploymentReport } from "../../shared/event_status.ts";
import type { Logger } from "../../lib/log.ts";
import { formatDuration } from "../../lib/setting_values.ts";
import { describeValkeyError } from "../../shared/valkey_errors.ts";
import type { ReportStore, TrackingStore } from "./store.ts";
import { type Clock, REAL_CLOCK } from "../../lib/clock.ts";
import type { Deployment } from "../kube/objects.ts";
import type { WorkerMetrics } from "../metrics.ts";
import { buildReport } from "./report.ts";
import { createReportWriter, type ReportWriter, type WriteResult } from "./report_writer.ts";
import {
  createRolloutTracker,
  type RolloutTracker,
  type TrackedEvent,
  type TrackTarget,
} from "./rollout_tracker.ts";

/** How long a report that cannot be written is retried, at least: the default STATUS_TTL. */
export const REPORT_RETRY_MS = 3_600_000;

/** Options for createFeedback. */
export interface FeedbackOptions {
  clusterName: string;
  /** ROLLOUT_TIMEOUT in ms; 0 turns tracking off. */
  rolloutTimeoutMs: number;
  /** ROLLOUT_BAKE_TIME in ms: how long a rollout must stay healthy before it is complete (default 0). */
  rolloutBakeTimeMs?: number;
  reports: ReportStore;
  tracking: TrackingStore;
  logger: Logger;
  metrics: WorkerMetrics;
  clock?: Clock;
  minWriteIntervalMs?: number;
  retryBaseMs?: number;
}

/** What the event handler hands over once its restarts are done. */
export interface HandledEvent {
  eventId: string;
  matched: number;
  deployments: DeploymentReport[];
  /** The restarted Deployments as the patch answered them. */
  restarted: Deployment[];
  /** A problem beyond the Deployments (a namespace that could not be listed). */
  reason?: string;
  /** The event was older than CATCH_UP_WINDOW: nothing was restarted. */
  expired?: boolean;
}

/** The worker's feedback. */
export interface Feedback {
  /** Every Deployment from the inventory's list and watch, and from API answers. */
  observe(type: "ADDED" | "MODIFIED" | "DELETED", d: Deployment): void;
  /** Reports an event and starts following its rollouts. */
  begin(event: HandledEvent): void;
  /** Resumes the events this cluster was following (call once the inventory is current). */
  resume(): Promise<void>;
  /** Resolves when no report is pending (tests, shutdown). */
  idle(signal?: AbortSignal): Promise<void>;
  /** Events followed, reports pending. */
  stats(): { tracked: number; pendingWrites: number };
  stop(): void;
}

interface Pending {
  event: TrackedEvent;
  final: boolean;
  giveUpAt: number;
  /** The tracker has asked for a write. */
  notified?: boolean;
  /** The tracking state is gone from Valkey (removed after the final write). */
  removed?: boolean;
}

/** The feedback's state, handed to each step below. */
interface Parts {
  options: FeedbackOptions;
  clock: Clock;
  /** ROLLOUT_TIMEOUT is not 0. */
  tracking: boolean;
  /** Events whose report is still to be written, by id. */
  pending: Map<string, Pending>;
  writer: ReportWriter;
  tracker: RolloutTracker;
}

/** Creates the feedback side of the worker. */
export function createFeedback(options: FeedbackOptions): Feedback {
  const clock = options.clock ?? REAL_CLOCK;
  const bakeTimeMs = options.rolloutBakeTimeMs ?? 0;
  warnOfBakeBeyondTimeout(options.logger, bakeTimeMs, options.rolloutTimeoutMs);
  const f: Parts = {
    options,
    clock,
    tracking: options.rolloutTimeoutMs > 0,
    pending: new Map(),
    writer: createReportWriter({
      clock,
      minIntervalMs: options.minWriteIntervalMs,
      retryBaseMs: options.retryBaseMs,
      write: (eventId) => writeReport(f, eventId),
      onResult: reportWriteResult(options),
      onDone: (eventId) => reportDone(f, eventId),
    }),
    tracker: createRolloutTracker({
      clock,
      timeoutText: formatDuration(options.rolloutTimeoutMs),
      bakeTimeMs,
      onChange: (eventId, final) => rolloutsChanged(f, eventId, final),
      onFinal: reportRolloutFinished(options),
    }),
  };
  return {
    observe: (type, d) => f.tracker.observe(type, d),
    begin: (handled) => begin(f, handled),
    resume: () => resume(f),
    idle: (signal) => f.writer.idle(signal),
    stats: () => ({ tracked: f.tracker.size(), pendingWrites: f.writer.pending() }),
    stop() {
      f.writer.stop();
      for (const eventId of f.pending.keys()) f.tracker.forget(eventId);
      f.pending.clear();
    },
  };
}

/** Reports a handled event: final at once when nothing is followed, else follows it. */
function begin(f: Parts, handled: HandledEvent): void {
  for (const d of handled.restarted) f.tracker.observe("MODIFIED", d);
  const event = trackedEventOf(handled, f.clock.now(), f.options.rolloutTimeoutMs);
  if (event.targets.length === 0) {
    const giveUpAt = f.clock.now() + REPORT_RETRY_MS;
    f.pending.set(event.eventId, { event, final: true, giveUpAt });
    f.writer.update(event.eventId, true, giveUpAt);
    return;
  }
  follow(f, event);
}

/** Follows the events a previous worker was following and this one is not. */
async function resume(f: Parts): Promise<void> {
  if (!f.tracking) return;
  const events = await loadTracked(f.options);
  for (const event of events) {
    if (f.pending.has(event.eventId)) continue;
    f.options.logger.info("resuming rollout tracking", {
      event_id: event.eventId,
      deployments: event.targets.length,
      deadline: new Date(event.deadline).toISOString(),
    });
    follow(f, event);
  }
}

/** Hands the event to the tracker; its report is retried until REPORT_RETRY_MS past the deadline. */
function follow(f: Parts, event: TrackedEvent): void {
  const giveUpAt = Math.max(event.deadline, f.clock.now()) + REPORT_RETRY_MS;
  f.pending.set(event.eventId, { event, final: false, giveUpAt });
  f.tracker.track(event);
  const entry = f.pending.get(event.eventId)!;
  // The first report goes out whatever the tracker made of it.
  if (!entry.notified) f.writer.update(event.eventId, entry.final, giveUpAt);
}

/** The tracker moved the event's rollouts: its report is due again. */
function rolloutsChanged(f: Parts, eventId: string, final: boolean): void {
  const entry = f.pending.get(eventId);
  if (!entry) return;
  // The live object, not a copy: a write reads it as it is then (latest wins).
  const now = f.tracker.view(eventId);
  if (now) entry.event = now as TrackedEvent;
  entry.final ||= final;
  entry.notified = true;
  f.writer.update(eventId, entry.final, entry.giveUpAt);
}

/** The writer's write: the report as it stands now, then the tracking state it calls for. */
async function writeReport(f: Parts, eventId: string): Promise<WriteResult> {
  const entry = f.pending.get(eventId);
  if (!entry) return "no_record";
  const report = buildReport({
    cluster: f.options.clusterName,
    matched: entry.event.matched,
    deployments: entry.event.deployments,
    now: new Date(f.clock.now()),
    reason: entry.event.reason,
    expired: entry.event.expired,
  });
  const result = await f.options.reports.write(eventId, report);
  const next = trackingAfterWrite(result, entry, f.tracking);
  if (next === "remove") {
    await f.options.tracking.remove(eventId);
    entry.removed = true;
  } else if (next === "save") await f.options.tracking.save(entry.event);
  return result;
}

/** The writer is done with the event: forget it everywhere. */
function reportDone(f: Parts, eventId: string): void {
  const entry = f.pending.get(eventId);
  f.pending.delete(eventId);
  f.tracker.forget(eventId);
  // A report that will not land still must not leave tracking state behind.
  if (entry && !entry.removed && f.tracking && entry.event.targets.length > 0) {
    f.options.tracking.remove(eventId).catch(() => {});
  }
}

/** The event to follow for a handled one: no targets when ROLLOUT_TIMEOUT is 0. */
export function trackedEventOf(
  handled: HandledEvent,
  now: number,
  rolloutTimeoutMs: number,
): TrackedEvent {
  return {
    eventId: handled.eventId,
    matched: handled.matched,
    deployments: structuredClone(handled.deployments),
    deadline: now + rolloutTimeoutMs,
    targets: rolloutTimeoutMs > 0 ? targetsOf(handled.restarted) : [],
    ...(handled.reason === undefined ? {} : { reason: handled.reason }),
    ...(handled.expired ? { expired: true } : {}),
  };
}

/**
 * What a report write leaves in the tracking state: saved while the event is
 * followed, removed with its final report; nothing when the report did not
 * land or no rollout is followed.
 */
export function trackingAfterWrite(
  result: WriteResult,
  entry: { final: boolean; event: { targets: readonly unknown[] } },
  tracking: boolean,
): "save" | "remove" | undefined {
  if (result !== "written" || !tracking || entry.event.targets.length === 0) return undefined;
  return entry.final ? "remove" : "save";
}

/** Counts each report write by result and logs the ones an operator must know of. */
function reportWriteResult({ logger, metrics }: FeedbackOptions) {
  return (eventId: string, result: WriteResult | "failed" | "abandoned", error?: unknown) => {
    metrics.reportWrites.inc({ result });
    const log = logger.child({ event_id: eventId });
    if (result === "no_record") {
      log.warn("no status record for the event; its report is not written", {
        hint: "web writes the record when it publishes; it has expired (STATUS_TTL) or the" +
          " event was not published by web",
      });
    } else if (result === "failed") {
      log.warn("writing the cluster report failed; retrying", {
        error: describeValkeyError(error),
      });
    } else if (result === "abandoned") {
      log.error("writing the cluster report failed; giving up", {
        error: describeValkeyError(error),
      });
    }
  };
}

/** Counts and logs each rollout that reached its final state. */
function reportRolloutFinished({ logger, metrics }: FeedbackOptions) {
  return (eventId: string, d: DeploymentReport) => {
    const state = d.rollout!.state as "complete" | "failed" | "timed_out";
    metrics.rollouts.inc({ state });
    const fields = {
      event_id: eventId,
      namespace: d.namespace,
      deployment: d.name,
      state,
      reason: d.rollout!.reason,
      replicas: d.rollout!.replicas,
      updated: d.rollout!.updated,
      available: d.rollout!.available,
    };
    if (state === "complete") logger.info("rollout finished", fields);
    else logger.warn("rollout finished", fields);
  };
}

/** The bake counts within ROLLOUT_TIMEOUT: one not shorter than it can never end complete. */
function warnOfBakeBeyondTimeout(logger: Logger, bakeTimeMs: number, rolloutTimeoutMs: number) {
  if (rolloutTimeoutMs === 0 || bakeTimeMs < rolloutTimeoutMs) return;
  logger.warn(
    "ROLLOUT_BAKE_TIME is not shorter than ROLLOUT_TIMEOUT: every rollout it applies to ends timed_out while baking",
    {
      rollout_bake_time: formatDuration(bakeTimeMs),
      rollout_timeout: formatDuration(rolloutTimeoutMs),
      hint:
        "the bake counts within ROLLOUT_TIMEOUT; set ROLLOUT_TIMEOUT to the longest rollout plus the bake time",
    },
  );
}

/** The rollouts to follow: each restarted Deployment at the generation the patch made. */
function targetsOf(restarted: readonly Deployment[]): TrackTarget[] {
  return restarted.map((d) => ({
    namespace: d.metadata.namespace,
    name: d.metadata.name,
    generation: typeof d.metadata.generation === "number" ? d.metadata.generation : 0,
    uid: d.metadata.uid,
  }));
}

/** The events a previous worker was following; none (logged) when they cannot be read. */
async function loadTracked({ logger, tracking }: FeedbackOptions): Promise<TrackedEvent[]> {
  let loaded;
  try {
    loaded = await tracking.load();
  } catch (err) {
    logger.warn("could not read the rollouts to resume; they are not reported further", {
      error: describeError(err),
    });
    return [];
  }
  if (loaded.dropped > 0) {
    logger.warn("dropped unreadable or expired rollout tracking state", {
      dropped: loaded.dropped,
    });
  }
  return loaded.events;
}
