/**
 * Handles the entries the stream reader hands over, in order: read each
 * message (verify, parse; a dropped or trimmed one is acknowledged at once,
 * so nothing stays pending for ever), work out what a backlog restarts
 * (worker/event_batch.ts), then handle each event once the inventory has
 * settled and acknowledge it when it is done. An event still waiting for the
 * inventory at shutdown is not acknowledged: another replica takes it over.
 */

import type { Logger } from "../lib/log.ts";
import type { StreamEntry } from "../shared/event_stream.ts";
import type { EventMessage } from "../shared/event.ts";
import { restartTimes } from "./event_batch.ts";
import { FUTURE_SKEW_MS } from "./event_verifier.ts";
import type { EventHandler } from "./events.ts";
import type { Inventory } from "./inventory/inventory.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** What handling stream entries needs. */
export interface StreamEventsOptions {
  handler: EventHandler;
  inventory: Pick<Inventory, "settled" | "whenSettled">;
  logger: Logger;
  metrics: Pick<WorkerMetrics, "events">;
  signal: AbortSignal;
  now?: () => number;
}

/** Creates the reader's `handle`. */
export function createStreamEvents(options: StreamEventsOptions) {
  const { handler, logger, metrics } = options;
  return async (entries: StreamEntry[], ack: (id: string) => Promise<void>): Promise<void> => {
    const events: { id: string; message: EventMessage }[] = [];
    for (const entry of entries) {
      const message = entry.message === undefined
        ? undefined
        : await handler.read(entry.message, entry.sender);
      if (message) {
        events.push({ id: entry.id, message });
        continue;
      }
      if (entry.message === undefined) {
        // Trimmed after delivery (older than the stream keeps) or not written by web.
        metrics.events.inc({ result: "invalid" });
        logger.warn("acknowledged a stream entry without a message", { entry: entry.id });
      }
      await ack(entry.id);
    }
    // An event dated ahead of this worker's clock is dropped when handled: it moves no other's restart.
    const latest = (options.now ?? Date.now)() + FUTURE_SKEW_MS;
    const times = restartTimes(events.map((e) => e.message), latest);
    for (const [i, { id, message }] of events.entries()) {
      // Shutting down: the events not begun stay pending for another replica.
      if (options.signal.aborted || !await settled(options, message)) return;
      const outcome = await handler.handle(message, times[i]);
      // Still another replica's (alive, slow): it stays pending and is looked at again later.
      if (outcome.kind !== "busy") await ack(id);
    }
  };
}

/** Waits for every scope to have listed or failed once; false when shutting down meanwhile. */
async function settled(options: StreamEventsOptions, message: EventMessage): Promise<boolean> {
  if (options.inventory.settled()) return true;
  options.logger.info("event held until the inventory has settled", { event_id: message.id });
  await options.inventory.whenSettled(options.signal);
  return !options.signal.aborted;
}
