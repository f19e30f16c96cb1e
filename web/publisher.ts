/**
 * Publishes an accepted event (SPEC §12) in one atomic script: append its
 * message to the event stream (shared/event_stream.ts), which every known
 * worker cluster reads through its own consumer group, write its status
 * binding naming those clusters, and publish it on the channel for observers
 * and older workers. The clusters an event is for are the known ones: those
 * registered within CLUSTER_FORGET_AFTER (older registrations are forgotten
 * here), or the explicit CLUSTERS list; a known cluster whose heartbeat is
 * not live is still one, and the record names it so its status says so.
 * With no known cluster nothing could ever handle the event: nothing is
 * written, and the caller answers 503. With a replay claim (web/replay.ts)
 * the same script first checks the token's record and stores the 202 answer
 * for retries: one round trip per event. With notifications it also keeps the
 * run's audit fields in the record and queues the event for the notifier
 * (web/notifier.ts), in the same atomic step: an accepted event is never left
 * out. Fails fast while disconnected.
 */

import { createHash } from "node:crypto";
import { AppError } from "../shared/errors.ts";
import type { ReplayClaim } from "./replay.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";
import {
  EVENTS_STREAM,
  MESSAGE_FIELD,
  RETENTION_FACTOR,
  retentionMinId,
  SENDER_FIELD,
} from "../shared/event_stream.ts";
import { NOTIFY_DUE_KEY, NOTIFY_FIELD, NOTIFY_FIRST_CHECK_MS } from "./notification_record.ts";
import {
  BINDING_FIELD,
  CLUSTER_LIVE_MS,
  CLUSTERS_KEY,
  type StatusBinding,
  statusKey,
  UNREACHABLE_FIELD,
} from "../shared/event_status.ts";

/** One event to publish and the binding that lets its poster read its status. */
export interface PublishInput {
  eventId: string;
  /** The encoded channel message. */
  message: string;
  /** Who sent it, signed (the stream entry's sender field); only the stream carries it. */
  senderField?: string;
  /** Everything of the binding but the clusters, which the script adds. */
  binding: Omit<StatusBinding, "clusters">;
  /** Publish only if this token use is unclaimed, and remember the answer under it. */
  replay?: { claim: ReplayClaim; answer: AnswerTemplate };
  /**
   * With notifications: the run's audit fields (JSON) the notification will
   * carry, kept in the record, and the event queued to be notified when final.
   */
  notify?: string;
}

/**
 * The 202 answer around the figures only the script knows: head, then
 * `,"subscribers":N,"clusters":[...]`, then tail.
 */
export interface AnswerTemplate {
  head: string;
  tail: string;
}

/** The answer a template gives for these figures, exactly as the script builds it. */
export function fillAnswer(
  answer: AnswerTemplate,
  subscribers: number,
  clusters: string[],
): string {
  return `${answer.head},"subscribers":${subscribers},"clusters":${
    JSON.stringify(clusters)
  }${answer.tail}`;
}

/** What publishing achieved. */
export interface Published {
  /** Channel subscribers that received the message (observers, older workers). */
  subscribers: number;
  /** The known clusters the event is for; empty: nothing was written. */
  clusters: string[];
  /** Known clusters whose heartbeat was not live (they handle it when they return). */
  unreachable: string[];
  /** With a replay claim and a known cluster: the answer stored for retries. */
  answer?: string;
  /** With a replay claim already taken: the record found; nothing was published. */
  taken?: string;
}

/** Sends events to the clusters. */
export interface Publisher {
  /** Resolves with the clusters the event is for; throws ERR_PUBLISH_FAILED. */
  publish(input: PublishInput): Promise<Published>;
  /** True when Valkey answers PING within the command timeout. */
  ping(): Promise<boolean>;
}

/** Options for createPublisher. */
export interface PublisherOptions {
  client: ValkeyCommands;
  channel: string;
  /** PUBLISH, or SPUBLISH for sharded PubSub in a cluster (shared/valkey_keys.ts); default PUBLISH. */
  publishCommand?: "PUBLISH" | "SPUBLISH";
  /** How long the status record lives. */
  statusTtlMs: number;
  /** How long a returning cluster still handles an event; the stream keeps twice that. */
  catchUpWindowMs: number;
  /** A cluster silent for longer is no longer known. */
  forgetAfterMs: number;
  /** The clusters every event is for, instead of the registered ones. */
  clusters?: readonly string[];
  now?: () => number;
}

/** The most clusters one event is for; the script reads no more names than this. */
export const MAX_CLUSTERS = 1000;

// Cluster names come from a sorted set anyone with Valkey access can write: the
// script keeps only names of the shape CLUSTER_NAME allows, of the MAX_CLUSTERS
// most recently heard. Security: every read of the set is bounded, so its size
// cannot make a publish (which blocks Valkey while it runs) slow: at most
// MAX_CLUSTERS names read (ZREVRANGEBYSCORE … LIMIT), at most MAX_CLUSTERS
// forgotten ones removed per publish (ZREMRANGEBYSCORE has no LIMIT; the rest
// go with later publishes), and with CLUSTERS at most MAX_CLUSTERS ZSCOREs.
// KEYS: status record, clusters, event stream, notifications due, and with a
// claim the replay key.
// ARGV: channel, message, binding without its closing brace, status TTL ms,
// live-since ms, binding field, publish command (PUBLISH, or SPUBLISH in a
// cluster), known-since ms, oldest stream id kept, explicit clusters (comma
// separated, or empty), unreachable field, message field, retention ms,
// notification audit JSON (empty: no notification), its field, when it is first
// due (ms), the event id, the sender field's name and value (empty: none); with
// a claim: body hash, replay TTL ms, answer head, answer tail.
// Entry ids come from Valkey's clock, the oldest id kept from web's: the script
// trims to the older of it and Valkey's TIME less the retention, so a web clock
// running ahead of Valkey's cannot trim the entry it appends, nor others' that
// are still within the window.
// Nothing is written when no cluster is known, so a request that could reach
// nobody leaves the token free.
const PUBLISH_SCRIPT = `
if #KEYS == 5 then
  local taken = redis.call('GET', KEYS[5])
  if taken then return {-1, {}, taken, {}} end
end
local names, down = {}, {}
local live = tonumber(ARGV[5])
if ARGV[10] ~= '' then
  for name in string.gmatch(ARGV[10], '[^,]+') do
    table.insert(names, name)
    local score = redis.call('ZSCORE', KEYS[2], name)
    if not score or tonumber(score) < live then table.insert(down, name) end
  end
else
  local forgotten = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[8], 'LIMIT', 0, ${MAX_CLUSTERS})
  if #forgotten > 0 then redis.call('ZREM', KEYS[2], unpack(forgotten)) end
  local known = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', ARGV[8], 'WITHSCORES', 'LIMIT', 0, ${MAX_CLUSTERS})
  for i = 1, #known, 2 do
    local name = known[i]
    if #name <= 63 and string.match(name, '^[%w%._%-]+$') then
      table.insert(names, name)
      if tonumber(known[i + 1]) < live then table.insert(down, name) end
    end
  end
end
if #names == 0 then return {0, {}, '', {}} end
table.sort(names)
table.sort(down)
local list = cjson.encode(names)
redis.call('HSET', KEYS[1], ARGV[6], ARGV[3] .. ',"clusters":' .. list .. '}')
if #down > 0 then redis.call('HSET', KEYS[1], ARGV[11], cjson.encode(down)) end
if ARGV[14] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[15], ARGV[14])
  redis.call('ZADD', KEYS[4], ARGV[16], ARGV[17])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local clock = redis.call('TIME')
local since = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) - tonumber(ARGV[13])
local minid = math.max(0, math.min(tonumber(ARGV[9]), since))
local trim = string.format('%.0f', minid)
if ARGV[19] ~= '' then
  redis.call('XADD', KEYS[3], 'MINID', '~', trim, '*', ARGV[12], ARGV[2], ARGV[18], ARGV[19])
else
  redis.call('XADD', KEYS[3], 'MINID', '~', trim, '*', ARGV[12], ARGV[2])
end
local n = redis.call(ARGV[7], ARGV[1], ARGV[2])
if #KEYS == 5 then
  local answer = ARGV[22] .. ',"subscribers":' .. n .. ',"clusters":' .. list .. ARGV[23]
  local record = '{"h":' .. cjson.encode(ARGV[20]) .. ',"s":202,"b":' .. cjson.encode(answer) .. '}'
  redis.call('SET', KEYS[5], record, 'PX', ARGV[21])
  return {n, names, answer, down}
end
return {n, names, '', down}
`;

// EVALSHA sends 40 bytes instead of the script; Valkey forgets scripts on a
// restart or SCRIPT FLUSH, and answers NOSCRIPT without running anything, so
// sending the script then is the same single run.
const PUBLISH_SCRIPT_SHA1 = createHash("sha1").update(PUBLISH_SCRIPT).digest("hex");

async function runPublishScript(
  client: ValkeyCommands,
  keysAndArgs: (string | number)[],
): Promise<unknown> {
  try {
    return await client.call("EVALSHA", PUBLISH_SCRIPT_SHA1, ...keysAndArgs);
  } catch (err) {
    if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
    return await client.call("EVAL", PUBLISH_SCRIPT, ...keysAndArgs);
  }
}

/** The script's reply as Published; anything else is a failure. */
function readReply(reply: unknown): Published {
  const [subscribers, clusters, text, down] = Array.isArray(reply) ? reply : [];
  if (
    typeof subscribers !== "number" || !Array.isArray(clusters) || typeof text !== "string" ||
    !Array.isArray(down)
  ) {
    throw new AppError("ERR_PUBLISH_FAILED", "Valkey answered the publish script oddly");
  }
  if (subscribers === -1) return { subscribers: 0, clusters: [], unreachable: [], taken: text };
  return {
    subscribers,
    clusters: clusters.map(String),
    unreachable: down.map(String),
    ...(text === "" ? {} : { answer: text }),
  };
}

/** Creates a publisher on an existing connection. */
export function createPublisher(options: PublisherOptions): Publisher {
  const now = options.now ?? Date.now;
  const { client } = options;
  if ((options.clusters?.length ?? 0) > MAX_CLUSTERS) {
    throw new AppError(
      "ERR_CONFIG",
      `CLUSTERS names ${options.clusters!.length} clusters; at most ${MAX_CLUSTERS}`,
    );
  }
  const explicit = (options.clusters ?? []).join(",");
  return {
    async publish(input) {
      const binding = JSON.stringify(input.binding);
      const replay = input.replay;
      const at = now();
      const args = [
        options.channel,
        input.message,
        binding.slice(0, -1),
        String(Math.max(1, Math.ceil(options.statusTtlMs))),
        String(at - CLUSTER_LIVE_MS),
        BINDING_FIELD,
        options.publishCommand ?? "PUBLISH",
        String(at - options.forgetAfterMs),
        retentionMinId(at, options.catchUpWindowMs),
        explicit,
        UNREACHABLE_FIELD,
        MESSAGE_FIELD,
        String(Math.ceil(RETENTION_FACTOR * options.catchUpWindowMs)),
        input.notify ?? "",
        NOTIFY_FIELD,
        String(at + NOTIFY_FIRST_CHECK_MS),
        input.eventId,
        SENDER_FIELD,
        input.senderField ?? "",
      ];
      const keys = [statusKey(input.eventId), CLUSTERS_KEY, EVENTS_STREAM, NOTIFY_DUE_KEY];
      let reply: unknown;
      try {
        reply = replay
          ? await runPublishScript(client, [
            5,
            ...keys,
            replay.claim.key,
            ...args,
            replay.claim.bodyHash,
            String(replay.claim.ttlMs),
            replay.answer.head,
            replay.answer.tail,
          ])
          : await runPublishScript(client, [4, ...keys, ...args]);
      } catch (err) {
        throw new AppError(
          "ERR_PUBLISH_FAILED",
          `publishing to Valkey failed: ${describeValkeyError(err)}`,
          { cause: err },
        );
      }
      return readReply(reply);
    },
    async ping() {
      try {
        return (await client.call("PING")) === "PONG";
      } catch {
        return false;
      }
    },
  };
}
