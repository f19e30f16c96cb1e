/**
 * The first steps of handling an event message: verify (web's signature, when
 * verify keys are set), parse (web's rules, checked again), and, once the
 * event is known not to have expired, admit (time skew and replays).
 * Messages are untrusted: anyone who can write to Valkey can append one, so
 * one that fails a step is logged, counted and dropped, never thrown.
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

/**
 * Reads one raw message (and the stream entry's sender field, when there is
 * one): the checked event, or undefined once it is dropped.
 */
export type MessageReader = (raw: string, sender?: string) => Promise<EventMessage | undefined>;

/** Admits a read event (time skew, replays): false once it is dropped. */
export type MessageAdmission = (message: EventMessage) => boolean;

/** Creates the reader (verify → parse) and the admission. */
export function createMessageReader(
  options: MessageReaderOptions,
): { read: MessageReader; admit: MessageAdmission } {
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

  const read: MessageReader = async (raw, sender) => {
    let checked;
    try {
      checked = await verifier.check(raw, sender);
    } catch (err) {
      invalid(err, raw.length);
      return undefined;
    }
    if (!checked.ok) {
      reject(checked.reason, checked.detail, { bytes: raw.length });
      return undefined;
    }
    try {
      const message = parseEventMessage(checked.event, options.prefixes);
      // Only a verified signature names a sender (worker/event_verifier.ts).
      return checked.sender ? { ...message, sender: checked.sender } : message;
    } catch (err) {
      invalid(err, raw.length);
      return undefined;
    }
  };
  const admit: MessageAdmission = (message) => {
    const admitted = verifier.admit(message);
    if (admitted.ok) return true;
    reject(admitted.reason, admitted.detail, {
      event_id: message.id,
      image: message.image,
      time: message.time,
    });
    return false;
  };
  return { read, admit };
}
