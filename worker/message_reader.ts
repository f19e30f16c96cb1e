/**
 * The first steps of handling a channel message: verify (web's signature, time
 * and replays, when verify keys are set), parse (web's rules, checked again),
 * admit (the replay window). Messages are untrusted: anyone who can publish to
 * Valkey can send one, so one that fails a step is logged, counted and
 * dropped, never thrown.
 */

import { describeError } from "../lib/error_text.ts";
import { type EventMessage, parseEventMessage } from "../shared/event.ts";
import type { DropReason, EventVerifier } from "./event_verifier.ts";
import type { Logger } from "../lib/log.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** What reading a message needs. */
export interface MessageReaderOptions {
  verifier: EventVerifier;
  prefixes: readonly string[];
  logger: Logger;
  metrics: WorkerMetrics;
}

/** Reads one raw message: the checked event, or undefined once it is dropped. */
export type MessageReader = (raw: string) => Promise<EventMessage | undefined>;

/** Creates the reader: verify → parse → admit. */
export function createMessageReader(options: MessageReaderOptions): MessageReader {
  const { verifier, logger, metrics } = options;
  // Security: only fields that are safe whatever the sender wrote (the reason, sizes, a
  // verified event's id and image); never the message bytes.
  const reject = (reason: DropReason, detail: string, fields: Record<string, unknown>) => {
    metrics.droppedMessages.inc({ reason });
    logger.warn("dropped a message that failed authentication", {
      reason,
      detail,
      ...fields,
    });
  };
  const invalid = (err: unknown, bytes: number) => {
    metrics.events.inc({ result: "invalid" });
    logger.warn("dropped an invalid message", { error: describeError(err), bytes });
  };

  return async (raw) => {
    let checked;
    try {
      checked = await verifier.check(raw);
    } catch (err) {
      invalid(err, raw.length);
      return undefined;
    }
    if (!checked.ok) {
      reject(checked.reason, checked.detail, { bytes: raw.length });
      return undefined;
    }
    let message: EventMessage;
    try {
      message = parseEventMessage(checked.event, options.prefixes);
    } catch (err) {
      invalid(err, raw.length);
      return undefined;
    }
    const admitted = verifier.admit(message);
    if (!admitted.ok) {
      reject(admitted.reason, admitted.detail, {
        event_id: message.id,
        image: message.image,
        time: message.time,
        key_id: checked.keyId,
      });
      return undefined;
    }
    return message;
  };
}
