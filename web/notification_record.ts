/**
 * What web keeps in Valkey so each event's notification goes out once per URL
 * across replicas: the queue of events to notify (a sorted set scored by when
 * each is next due, filled by the publish script), a claim per event (one
 * replica delivers; a lease, so a replica that dies hands it on), and per URL
 * in the status record a mark once it was delivered or given up on, so a
 * replica that takes over sends only what is left; and the run's audit fields
 * the notification carries, kept in the status record at publishing (public
 * claims, bounded, read back as untrusted). Every key carries the product's
 * hash tag (shared/valkey_keys.ts).
 */

import { createHash } from "node:crypto";
import { statusKey } from "../shared/event_status.ts";
import { productKey } from "../shared/valkey_keys.ts";
import type { ValkeyCommands } from "../shared/valkey_commands.ts";
import type { NotificationAudit } from "./notification_message.ts";

/** Events waiting to be notified, scored by when each is next looked at (ms). */
export const NOTIFY_DUE_KEY = productKey("notify", "due");
/** The status record's field holding the run's audit fields for the notification. */
export const NOTIFY_FIELD = "notify";
/** How soon after publishing an event is first looked at (a no_match may be final at once). */
export const NOTIFY_FIRST_CHECK_MS = 1000;

/** The claim on an event's notification. */
export function notifyClaimKey(eventId: string): string {
  return productKey("notify", "claim", eventId);
}

/** A URL's short, stable name: the mark's field and the delivery id; never the URL itself. */
export function targetId(url: URL): string {
  return createHash("sha256").update(url.href).digest("hex").slice(0, 16);
}

/** The status record's field marking one URL done for the event. */
export function notifiedField(url: URL): string {
  return `notified:${targetId(url)}`;
}

// Compare-and-delete: only the replica that holds the claim gives it back; an event still
// queued is due again at once, so another replica goes on without waiting.
const RELEASE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[2])
return 1`;
// Only into a record that still exists: a field written after it expired would make a
// new hash with no TTL, kept for ever.
const MARK =
  `if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 0`;

/** The notifier's reads and writes. */
export interface NotificationRecord {
  /** Up to `limit` event ids due by `nowMs`. */
  due(nowMs: number, limit: number): Promise<string[]>;
  /** Looks at the event again at `atMs` (only while it is queued). */
  later(eventId: string, atMs: number): Promise<void>;
  /** Takes the event's notification for `leaseMs`; false when another replica holds it. */
  claim(eventId: string, owner: string, leaseMs: number): Promise<boolean>;
  /** Gives the claim back; an event still queued is due again at `nowMs`. */
  release(eventId: string, owner: string, nowMs: number): Promise<void>;
  /** How many events are queued. */
  size(): Promise<number>;
  /** The URLs already done for the event, by notifiedField. */
  done(eventId: string): Promise<Set<string>>;
  /** Marks one URL done: `delivered` or `failed` (given up), with the time. */
  mark(eventId: string, url: URL, outcome: "delivered" | "failed", nowMs: number): Promise<void>;
  /** Takes the event off the queue: notified, filtered out, or its record gone. */
  finish(eventId: string): Promise<void>;
}

/** The record on a command connection. */
export function createNotificationRecord(client: ValkeyCommands): NotificationRecord {
  return {
    async due(nowMs, limit) {
      const ids = await client.call(
        "ZRANGEBYSCORE",
        NOTIFY_DUE_KEY,
        "-inf",
        String(nowMs),
        "LIMIT",
        0,
        limit,
      );
      return Array.isArray(ids) ? ids.map(String) : [];
    },
    async later(eventId, atMs) {
      await client.call("ZADD", NOTIFY_DUE_KEY, "XX", String(atMs), eventId);
    },
    async claim(eventId, owner, leaseMs) {
      const reply = await client.call("SET", notifyClaimKey(eventId), owner, "NX", "PX", leaseMs);
      return reply === "OK";
    },
    async release(eventId, owner, nowMs) {
      const keys = [notifyClaimKey(eventId), NOTIFY_DUE_KEY];
      await client.call("EVAL", RELEASE, 2, ...keys, owner, eventId, String(nowMs));
    },
    async size() {
      return Number(await client.call("ZCARD", NOTIFY_DUE_KEY));
    },
    async done(eventId) {
      const fields = await client.call("HKEYS", statusKey(eventId));
      const marks = Array.isArray(fields) ? fields.map(String) : [];
      return new Set(marks.filter((f) => f.startsWith("notified:")));
    },
    async mark(eventId, url, outcome, nowMs) {
      // The record's own TTL covers the mark.
      await client.call(
        "EVAL",
        MARK,
        1,
        statusKey(eventId),
        notifiedField(url),
        `${outcome} ${nowMs}`,
      );
    },
    async finish(eventId) {
      await client.call("ZREM", NOTIFY_DUE_KEY, eventId);
    },
  };
}

/** The audit fields, each from its name in `from`: a string of at most 300 characters, or left out. */
function pickAudit(from: Readonly<Record<string, unknown>>, names: AuditNames): NotificationAudit {
  const text = (name: string) => {
    const v = from[name];
    return typeof v === "string" && v.length <= 300 ? v : undefined;
  };
  const audit: NotificationAudit = {
    repository: text(names.repository) ?? "",
    repositoryId: text(names.repositoryId) ?? "",
  };
  for (const field of AUDIT_OPTIONAL) {
    const v = text(names[field]);
    if (v !== undefined) audit[field] = v;
  }
  return audit;
}

const AUDIT_OPTIONAL = ["ref", "sha", "workflowRef", "runId", "runAttempt", "actor"] as const;
type AuditNames = Record<keyof NotificationAudit, string>;
/** The claims each audit field comes from. */
const CLAIM_NAMES: AuditNames = {
  repository: "repository",
  repositoryId: "repository_id",
  ref: "ref",
  sha: "sha",
  workflowRef: "workflow_ref",
  runId: "run_id",
  runAttempt: "run_attempt",
  actor: "actor",
};
/** As stored: the fields under their own names. */
const STORED_NAMES = Object.fromEntries(
  Object.keys(CLAIM_NAMES).map((k) => [k, k]),
) as AuditNames;

/** The audit fields web stored at publishing; none readable: the record's fields only. */
export function readAudit(raw: string | undefined): NotificationAudit {
  // Valkey is not trusted with more than strings of the names web writes, each bounded.
  let value: unknown;
  try {
    value = JSON.parse(raw ?? "null");
  } catch {
    value = undefined;
  }
  const fields = value && typeof value === "object" ? value as Record<string, unknown> : {};
  return pickAudit(fields, STORED_NAMES);
}

/** The audit fields to store for a notification, from the verified claims (public, bounded). */
export function auditOf(claims: Readonly<Record<string, unknown>>): NotificationAudit {
  return pickAudit(claims, CLAIM_NAMES);
}
