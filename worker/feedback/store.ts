/**
 * What the worker keeps in Valkey for rollout feedback: its cluster's report
 * in an event's status record (one field, written only while web's binding is
 * there, then announced on the status channel), and the events whose
 * rollouts it follows, so a restarted worker can resume them.
 *
 * Security: the status record and the tracking keys are written by anyone
 * with Valkey access. The report script never creates a record (one without
 * web's binding has no TTL and no owner), and tracking state read back is
 * parsed strictly and bounded; a bad one is dropped, never trusted. With the
 * cluster's key, tracking state is sealed, and state this cluster did not
 * seal is dropped: a resumed worker signs what it reports from it.
 */

import { EVENT_ID } from "../../shared/event.ts";
import type { ValkeyCommands } from "../../shared/valkey_client.ts";
import { productKey } from "../../shared/valkey_keys.ts";
import {
  BINDING_FIELD,
  type ClusterReport,
  type DeploymentReport,
  emptyCounts,
  MAX_REPORTED_DEPLOYMENTS,
  parseClusterReport,
  reportField,
  statusChannel,
  statusKey,
} from "../../shared/event_status.ts";
import { encodeSignedReport, reportBytes } from "../../shared/report_signature.ts";
import type { SigningKey } from "../../shared/signing_key.ts";
import type { WriteResult } from "./report_writer.ts";
import { type StateSeal, UNSEALED } from "../sealed_state.ts";
import type { TrackedEvent, TrackTarget } from "./rollout_tracker.ts";

// HSET only into a record that holds web's binding: a record without one is not
// ours to create, and would live without a TTL.
const REPORT_SCRIPT = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`;

/** Writes cluster reports. */
export interface ReportStore {
  write(eventId: string, report: ClusterReport): Promise<WriteResult>;
}

/**
 * The field value of a report: signed for this event with the cluster's
 * REPORT_SIGNING_KEY (shared/report_signature.ts), or the bare report without one.
 */
export function reportValue(eventId: string, report: ClusterReport, key?: SigningKey): string {
  const json = JSON.stringify(report);
  if (!key) return json;
  return encodeSignedReport(json, key.keyId, key.sign(reportBytes(eventId, json)));
}

/** The report store on a Valkey connection; `channel` is VALKEY_CHANNEL; `key` signs. */
export function createReportStore(
  client: ValkeyCommands,
  channel: string,
  key?: SigningKey,
): ReportStore {
  return {
    async write(eventId, report) {
      const reply = await client.call(
        "EVAL",
        REPORT_SCRIPT,
        1,
        statusKey(eventId),
        BINDING_FIELD,
        reportField(report.cluster),
        reportValue(eventId, report, key),
        statusChannel(channel),
        eventId,
      );
      return reply === 1 ? "written" : "no_record";
    },
  };
}

/** Keeps the events a cluster follows, for a restarted worker. */
export interface TrackingStore {
  save(event: TrackedEvent): Promise<void>;
  remove(eventId: string): Promise<void>;
  /** Every event still followed (deadline not long past); bad entries are dropped. */
  load(): Promise<{ events: TrackedEvent[]; dropped: number }>;
}

/** A tracking key outlives its deadline by this much, so a worker back just after it can say timed_out. */
export const TRACKING_GRACE_MS = 60_000;
/** Most events resumed at start. */
const MAX_RESUMED = 1000;
/** Most followed Deployments one event persists (a report names at most MAX_REPORTED_DEPLOYMENTS). */
const MAX_TARGETS = 10_000;

/** Options for createTrackingStore. */
export interface TrackingStoreOptions {
  client: ValkeyCommands;
  clusterName: string;
  now?: () => number;
  /**
   * Seals each state with the cluster's key (worker/sealed_state.ts): what a
   * resumed worker reports, signed, must be what a worker of this cluster saved.
   */
  seal?: StateSeal;
}

function parseTracked(raw: string, eventId: string): TrackedEvent {
  const value = JSON.parse(raw) as Record<string, unknown>;
  const bad = (what: string) => new Error(`tracking state ${what}`);
  if (typeof value !== "object" || value === null) throw bad("is not an object");
  if (value.eventId !== eventId) throw bad("names another event");
  const { matched, deadline, targets, report } = value;
  if (!Number.isSafeInteger(matched) || (matched as number) < 0) throw bad("has no matched count");
  if (!Number.isSafeInteger(deadline)) throw bad("has no deadline");
  if (!Array.isArray(targets) || targets.length > MAX_TARGETS) throw bad("has no target list");
  const checked: TrackTarget[] = targets.map((t) => {
    if (
      typeof t?.namespace !== "string" || typeof t?.name !== "string" ||
      !Number.isSafeInteger(t?.generation) ||
      (t.uid !== undefined && typeof t.uid !== "string")
    ) throw bad("has an invalid target");
    const target: TrackTarget = {
      namespace: t.namespace,
      name: t.name,
      generation: t.generation,
      uid: t.uid,
    };
    // A bake under way resumes where it was (a bad one is dropped: the bake starts again).
    if (Number.isSafeInteger(t.bake?.since) && Number.isSafeInteger(t.bake?.generation)) {
      target.bake = { since: t.bake.since, generation: t.bake.generation };
    }
    return target;
  });
  // The report so far is stored in the shape web reads, and read back with web's parser.
  if (typeof report !== "string") throw bad("has no report");
  const parsed = parseClusterReport(report);
  const rest = value.rest;
  if (!Array.isArray(rest) || rest.length > MAX_TARGETS) throw bad("has no unnamed list");
  const unnamed: DeploymentReport[] = rest.map((d) => {
    if (typeof d?.namespace !== "string" || typeof d?.name !== "string") {
      throw bad("has an invalid unnamed entry");
    }
    return { namespace: d.namespace, name: d.name, result: "restarted" as const };
  });
  return {
    eventId,
    matched: matched as number,
    deadline: deadline as number,
    targets: checked,
    deployments: [...parsed.deployments, ...unnamed],
    ...(parsed.reason === undefined ? {} : { reason: parsed.reason }),
  };
}

/**
 * Stores per cluster: `{kuberollouttrigger}:<cluster>:tracking:<id>` (the
 * state, expiring TRACKING_GRACE_MS after the deadline) and the sorted set
 * `{kuberollouttrigger}:<cluster>:tracking` (ids by deadline) to find them.
 */
export function createTrackingStore(options: TrackingStoreOptions): TrackingStore {
  const now = options.now ?? Date.now;
  const { client } = options;
  const index = productKey(options.clusterName, "tracking");
  const keyOf = (eventId: string) => `${index}:${eventId}`;
  const seal = options.seal ?? UNSEALED;
  return {
    async save(event) {
      // The report keeps what web reads (bounded to the named Deployments);
      // followed Deployments beyond those are kept by name only.
      const named = event.deployments.slice(0, MAX_REPORTED_DEPLOYMENTS);
      const rest = event.targets
        .filter((t) => !named.some((d) => d.namespace === t.namespace && d.name === t.name))
        .map((t) => ({ namespace: t.namespace, name: t.name }));
      const report: ClusterReport = {
        cluster: "resume",
        state: "in_progress",
        matched: event.matched,
        counts: emptyCounts(),
        deployments: named,
        omitted: 0,
        updated: new Date(now()).toISOString(),
        ...(event.reason === undefined ? {} : { reason: event.reason }),
      };
      const ttl = Math.max(1, event.deadline + TRACKING_GRACE_MS - now());
      await client.transaction([
        [
          "SET",
          keyOf(event.eventId),
          seal.seal(
            keyOf(event.eventId),
            JSON.stringify({
              eventId: event.eventId,
              matched: event.matched,
              deadline: event.deadline,
              targets: event.targets,
              report: JSON.stringify(report),
              rest,
            }),
          ),
          "PX",
          ttl,
        ],
        ["ZADD", index, event.deadline, event.eventId],
        ["ZREMRANGEBYSCORE", index, "-inf", now() - TRACKING_GRACE_MS],
      ]);
    },
    async remove(eventId) {
      await client.transaction([["DEL", keyOf(eventId)], ["ZREM", index, eventId]]);
    },
    async load() {
      const cutoff = now() - TRACKING_GRACE_MS;
      const reply = await client.call(
        "ZRANGEBYSCORE",
        index,
        cutoff,
        "+inf",
        "LIMIT",
        0,
        MAX_RESUMED,
      );
      const ids = Array.isArray(reply) ? reply.map(String) : [];
      const events: TrackedEvent[] = [];
      let dropped = 0;
      for (const id of ids) {
        const raw = EVENT_ID.test(id) ? await client.call("GET", keyOf(id)) : null;
        if (typeof raw !== "string" || raw.length > 4_000_000) {
          dropped++;
          // An oversized state is never read again: its key goes with its index entry.
          await client.transaction([["DEL", keyOf(id)], ["ZREM", index, id]]);
          continue;
        }
        const opened = await seal.open(keyOf(id), raw);
        if (opened === undefined) {
          // Not sealed with this replica's key: forged, or a replica of this cluster with the
          // previous key (a rotation, an upgrade) still follows it. Not resumed, not deleted: it
          // expires with its deadline.
          dropped++;
          continue;
        }
        try {
          events.push(parseTracked(opened, id));
        } catch {
          // Security: never quote the stored value; the id is a checked UUID.
          dropped++;
          await client.transaction([["DEL", keyOf(id)], ["ZREM", index, id]]);
        }
      }
      return { events, dropped };
    },
  };
}
