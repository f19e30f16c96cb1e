/**
 * Rollout feedback on the worker side (SPEC §12): takes what the event handler
 * did to each Deployment, follows the restarted ones' rollouts through the
 * tracker, and writes the cluster's report (coalesced, retried) into the
 * event's status record; persists what a restarted worker needs to resume.
 * With ROLLOUT_TIMEOUT 0 nothing is tracked: restarted Deployments carry no
 * rollout and the report is final at once.
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
import { createReportWriter, type WriteResult } from "./report_writer.ts";
import { createRolloutTracker, type TrackedEvent, type TrackTarget } from "./rollout_tracker.ts";

/** How long a report that cannot be written is retried, at least: the default STATUS_TTL. */
export const REPORT_RETRY_MS = 3_600_000;

/** Options for createFeedback. */
export interface FeedbackOptions {
  clusterName: string;
  /** ROLLOUT_TIMEOUT in ms; 0 turns tracking off. */
  rolloutTimeoutMs: number;
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

/** Creates the feedback side of the worker. */
export function createFeedback(options: FeedbackOptions): Feedback {
  const clock = options.clock ?? REAL_CLOCK;
  const { logger } = options;
  const pending = new Map<string, Pending>();
  const tracking = options.rolloutTimeoutMs > 0;

  const writer = createReportWriter({
    clock,
    minIntervalMs: options.minWriteIntervalMs,
    retryBaseMs: options.retryBaseMs,
    async write(eventId) {
      const entry = pending.get(eventId);
      if (!entry) return "no_record";
      const report = buildReport({
        cluster: options.clusterName,
        matched: entry.event.matched,
        deployments: entry.event.deployments,
        now: new Date(clock.now()),
      });
      const result = await options.reports.write(eventId, report);
      if (result === "written" && tracking && entry.event.targets.length > 0) {
        if (entry.final) {
          await options.tracking.remove(eventId);
          entry.removed = true;
        } else await options.tracking.save(entry.event);
      }
      return result;
    },
    onResult: reportWriteResult(options),
    onDone(eventId) {
      const entry = pending.get(eventId);
      pending.delete(eventId);
      tracker.forget(eventId);
      // A report that will not land still must not leave tracking state behind.
      if (entry && !entry.removed && tracking && entry.event.targets.length > 0) {
        options.tracking.remove(eventId).catch(() => {});
      }
    },
  });

  const tracker = createRolloutTracker({
    clock,
    timeoutText: formatDuration(options.rolloutTimeoutMs),
    onChange(eventId, final) {
      const entry = pending.get(eventId);
      if (!entry) return;
      // The live object, not a copy: a write reads it as it is then (latest wins).
      const now = tracker.view(eventId);
      if (now) entry.event = now as TrackedEvent;
      entry.final ||= final;
      entry.notified = true;
      writer.update(eventId, entry.final, entry.giveUpAt);
    },
    onFinal: reportRolloutFinished(options),
  });

  const follow = (event: TrackedEvent) => {
    const giveUpAt = Math.max(event.deadline, clock.now()) + REPORT_RETRY_MS;
    pending.set(event.eventId, { event, final: false, giveUpAt });
    tracker.track(event);
    const entry = pending.get(event.eventId)!;
    // The first report goes out whatever the tracker made of it.
    if (!entry.notified) writer.update(event.eventId, entry.final, giveUpAt);
  };

  return {
    observe: (type, d) => tracker.observe(type, d),
    begin(handled) {
      for (const d of handled.restarted) tracker.observe("MODIFIED", d);
      const targets = targetsOf(handled.restarted);
      const event: TrackedEvent = {
        eventId: handled.eventId,
        matched: handled.matched,
        deployments: structuredClone(handled.deployments),
        deadline: clock.now() + options.rolloutTimeoutMs,
        targets: tracking ? targets : [],
      };
      if (!tracking || targets.length === 0) {
        const giveUpAt = clock.now() + REPORT_RETRY_MS;
        pending.set(event.eventId, { event, final: true, giveUpAt });
        writer.update(event.eventId, true, giveUpAt);
        return;
      }
      follow(event);
    },
    async resume() {
      if (!tracking) return;
      const events = await loadTracked(options);
      for (const event of events) {
        if (pending.has(event.eventId)) continue;
        logger.info("resuming rollout tracking", {
          event_id: event.eventId,
          deployments: event.targets.length,
          deadline: new Date(event.deadline).toISOString(),
        });
        follow(event);
      }
    },
    idle: (signal) => writer.idle(signal),
    stats: () => ({ tracked: tracker.size(), pendingWrites: writer.pending() }),
    stop() {
      writer.stop();
      for (const eventId of pending.keys()) tracker.forget(eventId);
      pending.clear();
    },
  };
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
