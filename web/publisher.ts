/**
 * Publishes event messages to the Valkey channel together with the event's
 * status binding (SPEC §12), in one atomic script: read the live clusters,
 * write the binding with its TTL, publish, and drop the binding again when
 * nobody received the event. With a replay claim (web/replay.ts) the same
 * script first checks the token's record and, when the event reached a
 * subscriber, stores the 202 answer for retries: one round trip per event. Fails fast while disconnected so the caller can
 * answer 503 at once instead of queueing an event nobody may ever see.
 */

import { createHash } from "node:crypto";
import { AppError } from "../shared/errors.ts";
import type { ReplayClaim } from "./replay.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";
import {
  BINDING_FIELD,
  CLUSTER_LIVE_MS,
  CLUSTERS_KEY,
  type StatusBinding,
  statusKey,
} from "../shared/event_status.ts";

/** One event to publish and the binding that lets its poster read its status. */
export interface PublishInput {
  eventId: string;
  /** The encoded channel message. */
  message: string;
  /** Everything of the binding but the live clusters, which the script adds. */
  binding: Omit<StatusBinding, "clusters">;
  /** Publish only if this token use is unclaimed, and remember the answer under it. */
  replay?: { claim: ReplayClaim; answer: AnswerTemplate };
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
  /** Worker processes that received the message. */
  subscribers: number;
  /** Clusters whose heartbeat was live when the message went out. */
  clusters: string[];
  /** With a replay claim and a subscriber: the answer stored for retries. */
  answer?: string;
  /** With a replay claim already taken: the record found; nothing was published. */
  taken?: string;
}

/** Sends messages to the channel. */
export interface Publisher {
  /** Resolves with subscribers and live clusters; throws ERR_PUBLISH_FAILED. */
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
  now?: () => number;
}

// Cluster names come from a sorted set anyone with Valkey access can write: the
// script keeps only names of the shape CLUSTER_NAME allows, at most 1000 of them.
// cjson encodes an empty table as {}, hence the explicit [].
// KEYS: status record, live clusters, and with a claim the replay key.
// ARGV: channel, message, binding without its closing brace, status TTL ms,
// live-since ms, binding field, publish command (PUBLISH, or SPUBLISH in a
// cluster); with a claim: body hash, replay TTL ms, answer head, answer tail.
// The replay record is only written once a subscriber got
// the event, so a request that delivered nothing leaves the token free.
const PUBLISH_SCRIPT = `
if #KEYS == 3 then
  local taken = redis.call('GET', KEYS[3])
  if taken then return {-1, {}, taken} end
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[5], '+inf')
local names = {}
for _, name in ipairs(live) do
  if #names < 1000 and #name <= 63 and string.match(name, '^[%w%._%-]+$') then
    table.insert(names, name)
  end
end
local list = '[]'
if #names > 0 then list = cjson.encode(names) end
redis.call('HSET', KEYS[1], ARGV[6], ARGV[3] .. ',"clusters":' .. list .. '}')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local n = redis.call(ARGV[7], ARGV[1], ARGV[2])
if n == 0 then
  redis.call('DEL', KEYS[1])
  return {0, names}
end
if #KEYS == 3 then
  local answer = ARGV[10] .. ',"subscribers":' .. n .. ',"clusters":' .. list .. ARGV[11]
  local record = '{"h":' .. cjson.encode(ARGV[8]) .. ',"s":202,"b":' .. cjson.encode(answer) .. '}'
  redis.call('SET', KEYS[3], record, 'PX', ARGV[9])
  return {n, names, answer}
end
return {n, names}
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

/** Creates a publisher on an existing connection. */
export function createPublisher(options: PublisherOptions): Publisher {
  const now = options.now ?? Date.now;
  const { client } = options;
  return {
    async publish(input) {
      const binding = JSON.stringify(input.binding);
      const replay = input.replay;
      const args = [
        options.channel,
        input.message,
        binding.slice(0, -1),
        String(Math.max(1, Math.ceil(options.statusTtlMs))),
        String(now() - CLUSTER_LIVE_MS),
        BINDING_FIELD,
        options.publishCommand ?? "PUBLISH",
      ];
      let reply: unknown;
      try {
        reply = replay
          ? await runPublishScript(client, [
            3,
            statusKey(input.eventId),
            CLUSTERS_KEY,
            replay.claim.key,
            ...args,
            replay.claim.bodyHash,
            String(replay.claim.ttlMs),
            replay.answer.head,
            replay.answer.tail,
          ])
          : await runPublishScript(client, [2, statusKey(input.eventId), CLUSTERS_KEY, ...args]);
      } catch (err) {
        throw new AppError(
          "ERR_PUBLISH_FAILED",
          `publishing to Valkey failed: ${describeValkeyError(err)}`,
          { cause: err },
        );
      }
      const [subscribers, clusters, text] = Array.isArray(reply) ? reply : [];
      if (
        typeof subscribers !== "number" || !Array.isArray(clusters) ||
        (text !== undefined && typeof text !== "string")
      ) {
        throw new AppError("ERR_PUBLISH_FAILED", "Valkey answered the publish script oddly");
      }
      if (subscribers === -1) return { subscribers: 0, clusters: [], taken: text };
      return {
        subscribers,
        clusters: clusters.map(String),
        ...(text === undefined ? {} : { answer: text }),
      };
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
