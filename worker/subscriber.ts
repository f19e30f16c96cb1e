/**
 * The channel subscription: subscribes on every (re)connect, so it survives
 * Valkey restarts and network loss (the client reconnects with backoff), and
 * reports each gap, because PubSub does not replay what was published while
 * nobody listened. Messages are handed on one at a time, in order.
 */

import type { Valkey } from "iovalkey";
import type { Logger } from "../lib/log.ts";
import { backoffDelay } from "../lib/backoff.ts";
import { describeError } from "../lib/error_text.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** A running subscription. */
export interface Subscription {
  subscribed(): boolean;
  /** Unsubscribes, waits for the message being handled (bounded), disconnects. */
  close(timeoutMs?: number): Promise<void>;
}

/** Options for subscribe. */
export interface SubscribeOptions {
  /**
   * A connection of its own (it enters subscriber mode), made by
   * createValkeyConnection with `offlineQueue: true` and `autoResubscribe:
   * false`: this module subscribes on each ready, so the state it reports is
   * the one it saw confirmed. subscribe() disconnects it on close().
   */
  client: Valkey;
  channel: string;
  logger: Logger;
  metrics: WorkerMetrics;
  onMessage: (message: string) => Promise<unknown>;
}

/** Subscribes to the channel on the given connection and keeps the subscription alive. */
export function subscribe(options: SubscribeOptions): Subscription {
  const { logger, metrics, client } = options;
  let isSubscribed = false;
  let everSubscribed = false;
  let lostAt = 0;
  let queue: Promise<unknown> = Promise.resolve();
  let closing = false;

  // "reconnecting" after a drop, "end" after disconnect(): either ends the subscription.
  const onLost = () => {
    // A shutdown we asked for is not a gap: nothing is missed that a running worker would get.
    if (!isSubscribed || closing) return;
    isSubscribed = false;
    lostAt = Date.now();
    metrics.subscribed.set(0);
    metrics.subscriptionGaps.inc();
    logger.warn("subscription lost; events published until it is back are not received");
  };
  client.on("reconnecting", onLost);
  client.on("end", onLost);
  // A refused SUBSCRIBE (an ACL without the channel, a busy server) is retried
  // with backoff while the connection stays up; a reconnect starts over.
  let retry: ReturnType<typeof setTimeout> | undefined;
  let generation = 0;
  const trySubscribe = (attempt: number, ready: number) => {
    if (closing || ready !== generation) return;
    client.subscribe(options.channel).then(() => {
      isSubscribed = true;
      metrics.subscribed.set(1);
      if (everSubscribed) {
        logger.info("resubscribed", { channel: options.channel, gap_ms: Date.now() - lostAt });
      } else logger.info("subscribed", { channel: options.channel });
      everSubscribed = true;
    }).catch((err: unknown) => {
      if (closing || ready !== generation) return;
      const delay = backoffDelay(attempt);
      logger.warn("subscribe failed; retrying", {
        channel: options.channel,
        error: describeValkeyError(err),
        retry_in_ms: delay,
      });
      retry = setTimeout(() => trySubscribe(attempt + 1, ready), delay);
    });
  };
  client.on("ready", () => {
    clearTimeout(retry);
    trySubscribe(0, ++generation);
  });
  // Handed over already connected: that ready was before our listener.
  if (client.status === "ready") trySubscribe(0, ++generation);
  client.on("message", (_channel: string, message: string) => {
    queue = queue.then(() => options.onMessage(message)).catch((err) =>
      logger.error("event handling failed", { error: describeError(err) })
    );
  });

  return {
    subscribed: () => isSubscribed,
    async close(timeoutMs = 20_000) {
      closing = true;
      clearTimeout(retry);
      await client.unsubscribe(options.channel).catch(() => {});
      isSubscribed = false;
      metrics.subscribed.set(0);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([queue, new Promise((r) => timer = setTimeout(r, timeoutMs))]);
      clearTimeout(timer);
      client.disconnect();
    },
  };
}
