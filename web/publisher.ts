/**
 * Publishes event messages to the Valkey channel together with the event's
 * status binding (SPEC §12), in one atomic script: read the live clusters,
 * write the binding with its TTL, publish, and drop the binding again when
 * nobody received the event. Fails fast while disconnected so the caller can
 * answer 503 at once instead of queueing an event nobody may ever see.
 */

import type { Valkey } from "iovalkey";
import { AppError } from "../shared/errors.ts";
import { describeValkeyError } from "../shared/valkey.ts";
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
}

/** What publishing achieved. */
export interface Published {
  /** Worker processes that received the message. */
  subscribers: number;
  /** Clusters whose heartbeat was live when the message went out. */
  clusters: string[];
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
  client: Valkey;
  channel: string;
  /** How long the status record lives. */
  statusTtlMs: number;
  now?: () => number;
}

// Cluster names come from a sorted set anyone with Valkey access can write: the
// script keeps only names of the shape CLUSTER_NAME allows, at most 1000 of them.
// cjson encodes an empty table as {}, hence the explicit [].
const PUBLISH_SCRIPT = `
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
local n = redis.call('PUBLISH', ARGV[1], ARGV[2])
if n == 0 then redis.call('DEL', KEYS[1]) end
return {n, names}
`;

/** Creates a publisher on an existing connection. */
export function createPublisher(options: PublisherOptions): Publisher {
  const now = options.now ?? Date.now;
  const { client } = options;
  return {
    async publish(input) {
      const binding = JSON.stringify(input.binding);
      let reply: unknown;
      try {
        reply = await client.eval(
          PUBLISH_SCRIPT,
          2,
          statusKey(input.eventId),
          CLUSTERS_KEY,
          options.channel,
          input.message,
          binding.slice(0, -1),
          String(Math.max(1, Math.ceil(options.statusTtlMs))),
          String(now() - CLUSTER_LIVE_MS),
          BINDING_FIELD,
        );
      } catch (err) {
        throw new AppError(
          "ERR_PUBLISH_FAILED",
          `publishing to Valkey failed: ${describeValkeyError(err)}`,
          { cause: err },
        );
      }
      const [subscribers, clusters] = Array.isArray(reply) ? reply : [];
      if (typeof subscribers !== "number" || !Array.isArray(clusters)) {
        throw new AppError("ERR_PUBLISH_FAILED", "Valkey answered the publish script oddly");
      }
      return { subscribers, clusters: clusters.map(String) };
    },
    async ping() {
      try {
        return (await client.ping()) === "PONG";
      } catch {
        return false;
      }
    },
  };
}
