/**
 * Publishes event messages to the Valkey channel and reports how many
 * subscribers received each. Fails fast while disconnected so the caller can
 * answer 503 at once instead of queueing an event nobody may ever see.
 */

import type { Valkey } from "iovalkey";
import { AppError, describeError } from "../shared/errors.ts";

/** Sends messages to the channel. */
export interface Publisher {
  /** Resolves to the number of subscribers that received it; throws ERR_PUBLISH_FAILED. */
  publish(message: string): Promise<number>;
  /** True when Valkey answers PING within the command timeout. */
  ping(): Promise<boolean>;
}

/** Creates a publisher on an existing connection. */
export function createPublisher(client: Valkey, channel: string): Publisher {
  return {
    async publish(message) {
      try {
        return await client.publish(channel, message);
      } catch (err) {
        throw new AppError(
          "ERR_PUBLISH_FAILED",
          `publishing to Valkey failed: ${describeError(err)}`,
          {
            cause: err,
          },
        );
      }
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
