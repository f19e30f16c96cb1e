/**
 * The event stream both modes agree on: web appends every accepted event's
 * channel message to one Valkey stream, and each worker cluster reads it
 * through a consumer group of its own (the group is the cluster's name), so
 * every cluster receives every event once, in the order web accepted them,
 * and catches up on what was appended while it was away. PubSub (the
 * channel) is still published for observers and older workers; it is not
 * what workers rely on.
 *
 * The stream is trimmed by age when web appends (XADD MINID), to twice the
 * catch-up window: events older than the window are reported as expired by
 * a returning cluster, those older than twice the window are gone.
 * Everything read back is untrusted (anyone with Valkey access can append):
 * replies are checked for shape and size here, and the message itself is
 * verified and parsed by the worker as a channel message is.
 */

import { productKey } from "./valkey_keys.ts";
import { MAX_SENDER_FIELD, MAX_SIGNED_MESSAGE } from "./event_signature.ts";

/** The stream of accepted events. */
export const EVENTS_STREAM = productKey("events");
/** The field of an entry with the event's channel message, signed or not. */
export const MESSAGE_FIELD = "m";
/**
 * An entry's field with who sent the event, signed (shared/event_signature.ts);
 * beside the message, so workers that read only MESSAGE_FIELD are unaffected.
 */
export const SENDER_FIELD = "s";
/** How long web keeps entries, as a multiple of CATCH_UP_WINDOW. */
export const RETENTION_FACTOR = 2;

/** One entry as read: its stream id, and its message unless it was trimmed or is malformed. */
export interface StreamEntry {
  id: string;
  /** Undefined for an entry that was trimmed after delivery or holds no message field. */
  message?: string;
  /** The signed sender field, when web wrote one. */
  sender?: string;
}

const ENTRY_ID = /^\d{1,20}-\d{1,20}$/;

/** True for a stream entry id (`<ms>-<seq>`). */
export function isEntryId(id: unknown): id is string {
  return typeof id === "string" && ENTRY_ID.test(id);
}

/** The later of two entry ids (milliseconds, then sequence). */
export function laterId(a: string | undefined, b: string): string {
  if (a === undefined) return b;
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return bm > am || (bm === am && bs > as) ? b : a;
}

/**
 * Reads an XINFO GROUPS or XINFO CONSUMERS reply (a list of flat
 * `[name, value, …]` records) as maps; anything else is skipped.
 */
export function parseInfoRecords(reply: unknown): Map<unknown, unknown>[] {
  if (!Array.isArray(reply)) return [];
  return reply.filter(Array.isArray).map((record: unknown[]) => {
    const fields = new Map<unknown, unknown>();
    for (let i = 0; i + 1 < record.length; i += 2) fields.set(record[i], record[i + 1]);
    return fields;
  });
}

/** The oldest entry id web keeps when it appends at `nowMs` (for XADD MINID). */
export function retentionMinId(nowMs: number, catchUpWindowMs: number): string {
  return String(Math.max(0, Math.floor(nowMs - RETENTION_FACTOR * catchUpWindowMs)));
}

/**
 * Reads the entries of an XREADGROUP reply for one stream
 * (`[[stream, [[id, [field, value, …]], …]]]`, or nil when nothing came);
 * throws on any other shape.
 */
export function parseReadReply(reply: unknown): StreamEntry[] {
  if (reply === null) return [];
  if (!Array.isArray(reply) || reply.length !== 1 || !Array.isArray(reply[0])) {
    throw new Error("Valkey answered XREADGROUP with an unexpected shape");
  }
  return parseEntries(reply[0][1]);
}

/** Reads XAUTOCLAIM's `[next, entries, deleted]`: the cursor and the entries claimed. */
export function parseAutoClaimReply(reply: unknown): { next: string; entries: StreamEntry[] } {
  if (!Array.isArray(reply) || reply.length < 2 || typeof reply[0] !== "string") {
    throw new Error("Valkey answered XAUTOCLAIM with an unexpected shape");
  }
  if (!ENTRY_ID.test(reply[0])) throw new Error("XAUTOCLAIM's cursor is not an entry id");
  return { next: reply[0], entries: parseEntries(reply[1]) };
}

/** Entries as `[id, fields]` pairs; a trimmed pending entry reads as `[id, nil]`. */
function parseEntries(value: unknown): StreamEntry[] {
  if (!Array.isArray(value)) throw new Error("stream entries are not a list");
  return value.map((raw) => {
    if (!Array.isArray(raw) || typeof raw[0] !== "string" || !ENTRY_ID.test(raw[0])) {
      throw new Error("a stream entry has no valid id");
    }
    const entry: StreamEntry = {
      id: raw[0],
      message: fieldOf(raw[1], MESSAGE_FIELD, MAX_SIGNED_MESSAGE),
    };
    const sender = fieldOf(raw[1], SENDER_FIELD, MAX_SENDER_FIELD);
    if (sender !== undefined) entry.sender = sender;
    return entry;
  });
}

/** One field of an entry, when it holds a string of a sane size. */
function fieldOf(fields: unknown, name: string, max: number): string | undefined {
  if (!Array.isArray(fields)) return undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] !== name) continue;
    const value = fields[i + 1];
    return typeof value === "string" && value.length <= max ? value : undefined;
  }
  return undefined;
}
