/**
 * Reads the event stream (shared/event_stream.ts) through the cluster's
 * consumer group: each replica is one consumer, Valkey hands every entry to
 * one of them, and an entry stays pending until the replica that handled it
 * acknowledges it. So the cluster receives every event once, and nothing is
 * lost to a replica that dies: its pending entries are taken over
 * (XAUTOCLAIM) by any replica once they have been idle for `claimIdleMs`, and
 * a replica re-reads its own pending entries after every reconnect (a reply
 * lost in transit, an acknowledgement that did not land).
 *
 * The group is created at the stream's end when it does not exist: a new
 * cluster does not act on pushes from before it registered. Blocking reads
 * hold their connection, so the reader has one of its own; each read blocks
 * for less than the command timeout.
 */

import { backoffDelay, sleep } from "../lib/backoff.ts";
import type { Logger } from "../lib/log.ts";
import {
  EVENTS_STREAM,
  isEntryId,
  laterId,
  parseAutoClaimReply,
  parseInfoRecords,
  parseReadReply,
  type StreamEntry,
} from "../shared/event_stream.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";

/** What the reader reports for metrics. */
export interface StreamReaderEvents {
  /** The reader started or stopped reading successfully. */
  reading(on: boolean): void;
  /** A read, claim or acknowledgement failed. */
  failed(): void;
  /** Entries taken over from another consumer. */
  claimed(count: number): void;
}

/** Options for startStreamReader. */
export interface StreamReaderOptions {
  /** A connection of the reader's own: blocking reads hold it. */
  client: ValkeyCommands;
  /** The consumer group: the cluster's name. */
  group: string;
  /** This replica's consumer name, unique per process. */
  consumer: string;
  logger: Logger;
  events: StreamReaderEvents;
  /**
   * Handles entries in order, acknowledging each once it is done; entries it
   * does not acknowledge (shutdown) stay pending for another replica.
   */
  handle(entries: StreamEntry[], ack: (id: string) => Promise<void>): Promise<void>;
  /**
   * Resolves once reading may start (the cluster registered under its name);
   * awaited after the group exists, so no event from registration on is missed.
   */
  ready?: () => Promise<void>;
  /** True while reading must stop (another cluster took the name over): nothing is read meanwhile. */
  paused?: () => boolean;
  signal: AbortSignal;
  /** How long one read blocks; keep it under the command timeout. */
  blockMs?: number;
  /** Most entries one read returns. */
  count?: number;
  /** A pending entry idle this long is taken over. */
  claimIdleMs?: number;
  /** How often pending entries of others are looked at. */
  claimEveryMs?: number;
  now?: () => number;
}

/** A running reader. */
export interface StreamReader {
  /** True while the last read succeeded. */
  reading(): boolean;
  /** True once the cluster's consumer group exists: events appended from then on reach it. */
  grouped(): boolean;
  /** Resolves once the reader stopped (after the signal, the batch in hand finished). */
  stopped: Promise<void>;
}

/** Reader state shared by the steps below. */
interface Loop {
  options: StreamReaderOptions;
  now: () => number;
  isReading: boolean;
  /** Own pending entries are read before new ones (after start and after every failure). */
  ownPendingFirst: boolean;
  claimCursor: string;
  lastClaim: number;
  lastPrune: number;
  /** The group is known to exist (false again after NOGROUP). */
  groupReady: boolean;
  /** The latest entry id this reader read or the group had delivered when it was first found. */
  lastSeen?: string;
  /** The group existed once: registration may go ahead. */
  grouped: boolean;
  /** A read succeeded once (the first is logged differently). */
  everRead: boolean;
  failures: number;
}

/** How often consumers left behind by replicas that are gone are looked for. */
const PRUNE_EVERY_MS = 300_000;
/** A consumer with nothing pending and silent this long belongs to a replica that is gone. */
export const GONE_CONSUMER_IDLE_MS = 3_600_000;

/** Starts reading; stops when `options.signal` aborts. */
export function startStreamReader(options: StreamReaderOptions): StreamReader {
  const loop: Loop = {
    options,
    now: options.now ?? Date.now,
    isReading: false,
    ownPendingFirst: true,
    claimCursor: "0-0",
    lastClaim: -Infinity,
    lastPrune: -Infinity,
    groupReady: false,
    grouped: false,
    everRead: false,
    failures: 0,
  };
  return { reading: () => loop.isReading, grouped: () => loop.grouped, stopped: run(loop) };
}

async function run(loop: Loop): Promise<void> {
  const { options } = loop;
  while (!options.signal.aborted && !loop.groupReady) {
    try {
      await createGroup(loop);
    } catch (err) {
      await failed(loop, err);
    }
  }
  await options.ready?.();
  while (!options.signal.aborted) {
    if (options.paused?.()) {
      setReading(loop, false);
      await sleep(options.blockMs ?? 2000, options.signal);
      continue;
    }
    try {
      if (!loop.groupReady) await createGroup(loop);
      const entries = await nextEntries(loop);
      for (const entry of entries) loop.lastSeen = laterId(loop.lastSeen, entry.id);
      setReading(loop, true);
      loop.failures = 0;
      if (entries.length > 0) await handleHeld(loop, entries);
    } catch (err) {
      await failed(loop, err);
    }
  }
  setReading(loop, false);
  await leave(loop);
}

/** The next entries to handle: own pending, others' stale pending, or new ones. */
async function nextEntries(loop: Loop): Promise<StreamEntry[]> {
  const { options } = loop;
  const count = options.count ?? 100;
  if (loop.ownPendingFirst) {
    const own = await readGroup(loop, count, "0");
    if (own.length === 0) loop.ownPendingFirst = false;
    return own;
  }
  if (loop.now() - loop.lastClaim >= (options.claimEveryMs ?? 5000)) {
    loop.lastClaim = loop.now();
    const claimed = await claimStale(loop, count);
    if (claimed.length > 0) return claimed;
    if (loop.now() - loop.lastPrune >= PRUNE_EVERY_MS) {
      loop.lastPrune = loop.now();
      await pruneConsumers(loop);
    }
  }
  return await readGroup(loop, count, ">", options.blockMs ?? 2000);
}

/**
 * One XREADGROUP for this consumer: from "0" its own pending entries (never
 * blocking), from ">" new ones, waiting up to `blockMs` for them.
 */
async function readGroup(
  loop: Loop,
  count: number,
  start: "0" | ">",
  blockMs?: number,
): Promise<StreamEntry[]> {
  const { options } = loop;
  const block = blockMs === undefined ? [] : ["BLOCK", blockMs];
  return parseReadReply(
    await options.client.call(
      "XREADGROUP",
      "GROUP",
      options.group,
      options.consumer,
      "COUNT",
      count,
      ...block,
      "STREAMS",
      EVENTS_STREAM,
      start,
    ),
  );
}

/** Takes over entries another consumer (a replica that died) left pending too long. */
async function claimStale(loop: Loop, count: number): Promise<StreamEntry[]> {
  const { options } = loop;
  const { next, entries } = parseAutoClaimReply(
    await options.client.call(
      "XAUTOCLAIM",
      EVENTS_STREAM,
      options.group,
      options.consumer,
      options.claimIdleMs ?? 15_000,
      loop.claimCursor,
      "COUNT",
      count,
    ),
  );
  loop.claimCursor = next;
  if (entries.length > 0) {
    options.events.claimed(entries.length);
    options.logger.warn("took over events another replica left unacknowledged", {
      entries: entries.length,
    });
  }
  return entries;
}

/**
 * Removes consumers of replicas that are gone (every pod restart leaves one):
 * only those with nothing pending, so no entry is dropped with them.
 */
async function pruneConsumers(loop: Loop): Promise<void> {
  const { options } = loop;
  const reply = await options.client.call("XINFO", "CONSUMERS", EVENTS_STREAM, options.group);
  for (const name of goneConsumers(reply, options.consumer)) {
    await options.client.call("XGROUP", "DELCONSUMER", EVENTS_STREAM, options.group, name);
  }
}

/** From XINFO CONSUMERS: the others with nothing pending, idle for GONE_CONSUMER_IDLE_MS. */
export function goneConsumers(reply: unknown, self: string): string[] {
  const gone: string[] = [];
  for (const fields of parseInfoRecords(reply)) {
    const name = fields.get("name");
    if (typeof name !== "string" || name === self) continue;
    if (fields.get("pending") === 0 && Number(fields.get("idle")) > GONE_CONSUMER_IDLE_MS) {
      gone.push(name);
    }
  }
  return gone;
}

/**
 * Creates the group unless it exists: at the stream's end the first time,
 * so a new cluster does not act on earlier pushes. Created again after it was
 * lost (a Valkey without persistence restarted, and web has appended to a new
 * stream since, while this cluster stayed registered), it starts after the
 * last entry this reader knew of, so nothing appended meanwhile is skipped.
 */
async function createGroup(loop: Loop): Promise<void> {
  const { options } = loop;
  const start = loop.lastSeen ?? "$";
  try {
    await options.client.call("XGROUP", "CREATE", EVENTS_STREAM, options.group, start, "MKSTREAM");
    options.logger.info("created the cluster's consumer group on the event stream", {
      group: options.group,
      after: start,
    });
  } catch (err) {
    if (!(err instanceof Error && err.message.startsWith("BUSYGROUP"))) throw err;
  }
  loop.lastSeen ??= await lastDelivered(loop);
  loop.groupReady = true;
  loop.grouped = true;
  loop.ownPendingFirst = true;
}

/** The group's last delivered entry id (XINFO GROUPS); undefined when it is not there. */
async function lastDelivered(loop: Loop): Promise<string | undefined> {
  const reply = await loop.options.client.call("XINFO", "GROUPS", EVENTS_STREAM);
  for (const fields of parseInfoRecords(reply)) {
    const id = fields.get("last-delivered-id");
    if (fields.get("name") === loop.options.group && isEntryId(id)) return id;
  }
  return undefined;
}

/**
 * Hands entries to the handler and keeps them this replica's meanwhile:
 * their idle time is reset (XCLAIM to itself) every third of the take-over
 * limit, so a long batch is not taken over by another replica half-way.
 */
async function handleHeld(loop: Loop, entries: StreamEntry[]): Promise<void> {
  const { options } = loop;
  const held = new Set(entries.map((e) => e.id));
  const idleMs = options.claimIdleMs ?? 15_000;
  const refresh = setInterval(() => {
    if (held.size === 0) return;
    options.client.call(
      "XCLAIM",
      EVENTS_STREAM,
      options.group,
      options.consumer,
      0,
      ...held,
      "JUSTID",
    ).catch(() => {});
  }, Math.max(100, Math.floor(idleMs / 3)));
  try {
    await options.handle(entries, (id) => {
      held.delete(id);
      return ack(loop, id);
    });
  } finally {
    clearInterval(refresh);
  }
}

async function ack(loop: Loop, id: string): Promise<void> {
  const { options } = loop;
  try {
    await options.client.call("XACK", EVENTS_STREAM, options.group, id);
  } catch (err) {
    // Left pending: re-read after the reconnect, found handled, and acknowledged then.
    options.events.failed();
    options.logger.warn("acknowledging an event failed; it is acknowledged when read again", {
      entry: id,
      error: describeValkeyError(err),
    });
    loop.ownPendingFirst = true;
  }
}

/** A failed step: logged once per outage, then a backoff before the next try. */
async function failed(loop: Loop, err: unknown): Promise<void> {
  const { options } = loop;
  options.events.failed();
  if (loop.failures === 0) {
    options.logger.warn("reading the event stream failed; retrying", {
      error: describeValkeyError(err),
    });
  }
  setReading(loop, false);
  // NOGROUP: the stream was deleted (a Valkey without persistence restarted): create it again.
  if (err instanceof Error && err.message.startsWith("NOGROUP")) loop.groupReady = false;
  loop.ownPendingFirst = true;
  await sleep(backoffDelay(loop.failures++), options.signal);
}

function setReading(loop: Loop, on: boolean): void {
  if (loop.isReading === on) return;
  loop.isReading = on;
  loop.options.events.reading(on);
  if (!on) return;
  const { group, consumer } = loop.options;
  if (loop.everRead) loop.options.logger.info("reading the event stream again", { group });
  else loop.options.logger.info("reading the event stream", { group, consumer });
  loop.everRead = true;
}

/**
 * On shutdown the consumer is removed when it holds nothing pending; with
 * entries pending it stays, so another replica takes them over.
 */
async function leave(loop: Loop): Promise<void> {
  const { options } = loop;
  try {
    const pending = await options.client.call(
      "XPENDING",
      EVENTS_STREAM,
      options.group,
      "-",
      "+",
      1,
      options.consumer,
    );
    if (Array.isArray(pending) && pending.length === 0) {
      await options.client.call(
        "XGROUP",
        "DELCONSUMER",
        EVENTS_STREAM,
        options.group,
        options.consumer,
      );
    }
  } catch {
    // Valkey is away: the consumer stays, empty or with entries others take over.
  }
}
