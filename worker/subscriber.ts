/**
 * The channel subscription: the client subscribes on every (re)connect, so it
 * survives Valkey restarts, failovers and network loss, and this module
 * reports each gap, because PubSub does not replay what was published while
 * nobody listened. Messages are handed on one at a time, in order.
 */

import type { Logger } from "../lib/log.ts";
import { describeError } from "../lib/error_text.ts";
import type { ValkeyClient, ValkeySubscription } from "../shared/valkey_client.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** A running subscription. */
export interface Subscription {
  subscribed(): boolean;
  /** Stops taking messages, waits for the one being handled (bounded), disconnects. */
  close(timeoutMs?: number): Promise<void>;
}

/** Opens a subscriber connection (createValkeyClient with a subscription). */
export type SubscriberConnector = (
  subscription: ValkeySubscription,
  onStateChange: (subscribed: boolean) => void,
) => ValkeyClient;

/** Options for subscribe. */
export interface SubscribeOptions {
  /** Opens the connection; it counts as connected once the server confirmed the subscription. */
  connect: SubscriberConnector;
  channel: string;
  /** Sharded PubSub, in a cluster (shared/valkey_keys.ts). */
  sharded?: boolean;
  logger: Logger;
  metrics: WorkerMetrics;
  onMessage: (message: string) => Promise<unknown>;
  now?: () => number;
}

/** Subscribes to the channel and keeps the subscription alive. */
export function subscribe(options: SubscribeOptions): Subscription {
  const { logger, metrics } = options;
  const now = options.now ?? Date.now;
  let isSubscribed = false;
  let everSubscribed = false;
  let lostAt = 0;
  let queue: Promise<unknown> = Promise.resolve();
  let closing = false;

  const onStateChange = (subscribed: boolean) => {
    // A shutdown we asked for is not a gap: nothing is missed that a running worker would get.
    if (closing || subscribed === isSubscribed) return;
    isSubscribed = subscribed;
    metrics.subscribed.set(subscribed ? 1 : 0);
    if (!subscribed) {
      lostAt = now();
      metrics.subscriptionGaps.inc();
      logger.warn("subscription lost; events published until it is back are not received");
    } else if (everSubscribed) {
      logger.info("resubscribed", { channel: options.channel, gap_ms: now() - lostAt });
    } else logger.info("subscribed", { channel: options.channel });
    everSubscribed ||= subscribed;
  };
  const onMessage = (channel: string, message: string) => {
    if (closing || channel !== options.channel) return;
    queue = queue.then(() => options.onMessage(message)).catch((err) =>
      logger.error("event handling failed", { error: describeError(err) })
    );
  };
  const client = options.connect(
    { channels: [options.channel], sharded: options.sharded, onMessage },
    onStateChange,
  );

  return {
    subscribed: () => isSubscribed,
    async close(timeoutMs = 20_000) {
      closing = true;
      isSubscribed = false;
      metrics.subscribed.set(0);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([queue, new Promise((r) => timer = setTimeout(r, timeoutMs))]);
      clearTimeout(timer);
      client.disconnect();
    },
  };
}
