/**
 * The worker's decisions on channel messages when EVENT_VERIFY_KEYS is set:
 * the envelope and its signatures (the event's, and its sender's when web
 * named one) before the event is parsed, then the event's time against the
 * window and its id against replays. Without keys every message passes
 * unchecked, as before signing existed, and no message has a sender: only a
 * verified one can say who sent it.
 */

import type { EventMessage } from "../shared/event.ts";
import {
  type OpenedMessage,
  openMessage,
  openSenderField,
  senderBytes,
  signedBytes,
  type VerifyKeys,
} from "../shared/event_signature.ts";
import { parseSender, type Sender } from "../shared/event_sender.ts";

/** How far ahead of the worker's clock a message's time may be (clock skew). */
export const FUTURE_SKEW_MS = 30_000;

/** Why a channel message was dropped before anything was done with it. */
export type DropReason =
  | "unsigned"
  | "malformed"
  | "unknown_key"
  | "bad_signature"
  | "expired"
  | "future"
  | "replayed";

/** Every drop reason, for metrics exported at 0. */
export const DROP_REASONS: readonly DropReason[] = [
  "unsigned",
  "malformed",
  "unknown_key",
  "bad_signature",
  "expired",
  "future",
  "replayed",
];

/** The outcome of checking a message: the event text to parse, or why it is dropped. */
export type CheckedMessage =
  | { ok: true; event: string; keyId?: string; sender?: Sender }
  | { ok: false; reason: DropReason; detail: string };

/** The outcome of admitting a parsed event. */
export type Admission = { ok: true } | { ok: false; reason: DropReason; detail: string };

/** The worker's decisions on channel messages. */
export interface EventVerifier {
  /** True when verify keys are set: unsigned messages are dropped. */
  enforcing: boolean;
  keyIds: string[];
  /**
   * Step 1, before the event is parsed: the envelope and its signature, and
   * the stream entry's sender field (`sent`) with its own.
   */
  check(raw: string, sent?: string): Promise<CheckedMessage>;
  /** Step 2, after the event parsed: its time against the window, its id against replays. */
  admit(message: EventMessage): Admission;
}

/** Options for createEventVerifier. */
export interface EventVerifierOptions {
  /** No keys: every message passes unchecked, as before signing existed. */
  keys?: VerifyKeys;
  /** Oldest message accepted (web's time against this worker's clock). */
  maxAgeMs: number;
  futureSkewMs?: number;
  now?: () => number;
}

/**
 * A verified event's sender: its own signature (same key) must verify over
 * this event, and its text must be a sender. A message whose sender fails is
 * dropped whole: web never writes a sender it did not sign.
 */
async function checkSender(
  keys: VerifyKeys,
  kid: string,
  event: string,
  field: string,
): Promise<CheckedMessage> {
  let sent;
  try {
    sent = openSenderField(field);
  } catch (err) {
    return { ok: false, reason: "malformed", detail: (err as Error).message };
  }
  if (!(await keys.verify(kid, sent.ssig, senderBytes(sent.sender, event)))) {
    return { ok: false, reason: "bad_signature", detail: "sender signature does not verify" };
  }
  try {
    return { ok: true, event, keyId: kid, sender: parseSender(sent.sender) };
  } catch (err) {
    return { ok: false, reason: "malformed", detail: (err as Error).message };
  }
}

/**
 * Creates the verifier. A verified event's id is remembered until it leaves
 * the window, so a replay within the window is dropped too (by this process;
 * Valkey, which an attacker may write, is not trusted with that memory).
 */
export function createEventVerifier(options: EventVerifierOptions): EventVerifier {
  const now = options.now ?? Date.now;
  const skew = options.futureSkewMs ?? FUTURE_SKEW_MS;
  const keys = options.keys;
  // Insertion order is close to expiry order (web's times): pruning stops at the first live id.
  const seen = new Map<string, number>();
  const prune = (at: number) => {
    for (const [id, expires] of seen) {
      if (expires > at) break;
      seen.delete(id);
    }
  };
  return {
    enforcing: keys !== undefined,
    keyIds: keys?.ids ?? [],
    async check(raw, sent) {
      let opened: OpenedMessage;
      try {
        opened = openMessage(raw);
      } catch (err) {
        if (!keys) throw err;
        return { ok: false, reason: "malformed", detail: (err as Error).message };
      }
      if (!keys) return { ok: true, event: opened.event };
      if (!opened.signed) {
        return { ok: false, reason: "unsigned", detail: "message carries no signature" };
      }
      if (!keys.has(opened.kid)) {
        return {
          ok: false,
          reason: "unknown_key",
          detail: "signed by a key not in the verify keys",
        };
      }
      if (!(await keys.verify(opened.kid, opened.sig, signedBytes(opened.rep, opened.event)))) {
        return { ok: false, reason: "bad_signature", detail: "signature does not verify" };
      }
      if (sent === undefined) return { ok: true, event: opened.event, keyId: opened.kid };
      return await checkSender(keys, opened.kid, opened.event, sent);
    },
    admit(message) {
      if (!keys) return { ok: true };
      const at = now();
      const time = Date.parse(message.time);
      if (at - time > options.maxAgeMs) {
        return {
          ok: false,
          reason: "expired",
          detail: `sent ${Math.round((at - time) / 1000)}s ago, more than EVENT_MAX_AGE`,
        };
      }
      if (time - at > skew) {
        return {
          ok: false,
          reason: "future",
          detail: `dated ${Math.round((time - at) / 1000)}s ahead of this worker's clock`,
        };
      }
      prune(at);
      if (seen.has(message.id)) {
        return { ok: false, reason: "replayed", detail: "this event id was already received" };
      }
      seen.set(message.id, time + options.maxAgeMs);
      return { ok: true };
    },
  };
}
