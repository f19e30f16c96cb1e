/**
 * The signed envelope both modes agree on (Ed25519, RFC 8032): what bytes a
 * signature covers, the key ids, the envelope's wire format and its reader.
 * Web signs (web/event_signer.ts); workers holding verify keys drop whatever
 * does not verify, is outside the time window or was seen before
 * (worker/event_verifier.ts), so write access to Valkey alone cannot restart
 * anything.
 *
 * Key ids are RFC 7638 JWK thumbprints of the public key (SHA-256, base64url):
 * web and worker derive the same id from either half with no extra setting.
 * Key material is secret or at least long: nothing here ever quotes it; parse
 * errors name the setting's shape, never its value.
 *
 * Wire format of a signed message (parsed with the duplicate-rejecting reader):
 *   {"event":"<the event message JSON, as a string>","kid":"<43 chars>",
 *    "rep":"<the binding's repository hash>","sig":"<86 chars>"}
 * One signature per event says "web published this event for this
 * repository": it covers EVENT_CONTEXT, `rep`, a newline and the exact bytes
 * of `event`. The status binding stores the same `kid` and `sig`; web checks
 * it by rebuilding those bytes from the binding's fields (the event encoding
 * is fixed), so a binding moved to another repository, event or tag set fails.
 *
 * Who sent the event travels beside the message, in the stream entry's own
 * field (shared/event_stream.ts SENDER_FIELD), so workers of the previous
 * version, which accept exactly the envelope above, still read every event:
 *   {"sender":"<sender JSON>","ssig":"<86 chars>"}
 * `ssig` says "this workflow run sent it": the same key's signature over
 * SENDER_CONTEXT, `sender` (shared/event_sender.ts, canonical JSON, so it
 * holds no raw newline), a newline and the exact bytes of `event`, so a
 * sender cannot be moved to another event. An entry without the field has no
 * sender (an older web; or someone removed it: clusters that ask who sent an
 * event then refuse it, never grant).
 */

import { AppError } from "./errors.ts";
import type { VerifyKeySource } from "./event_keys.ts";
import { type JsonValue, parseStrictJson } from "../lib/strict_json.ts";

/** Domain separation prefix of an event signature. */
export const EVENT_CONTEXT = "kuberollouttrigger event v1\n";
/** Domain separation prefix of a sender signature. */
export const SENDER_CONTEXT = "kuberollouttrigger sender v1\n";
/** Longest channel message read at all; web's are well under 8 KiB. */
export const MAX_SIGNED_MESSAGE = 32_768;

/** A key id: RFC 7638 thumbprint, base64url. */
export const KEY_ID = /^[A-Za-z0-9_-]{43}$/;
/** An Ed25519 signature, base64url. */
export const SIGNATURE = /^[A-Za-z0-9_-]{86}$/;
/** The binding's repository: a sha256 hex hash. */
export const REPOSITORY = /^[0-9a-f]{64}$/;
const ENVELOPE_KEYS = ["event", "kid", "rep", "sig"];
const SENDER_KEYS = ["sender", "ssig"];
/** Longest sender field read at all; web's are well under 2 KiB. */
export const MAX_SENDER_FIELD = 4096;
const encoder = new TextEncoder();

/** The bytes one event signature covers: the context, the repository hash, the event. */
export function signedBytes(repository: string, eventJson: string): Uint8Array<ArrayBuffer> {
  // The hash has a fixed length and alphabet: nothing can move across the newline.
  return encoder.encode(`${EVENT_CONTEXT}${repository}\n${eventJson}`);
}

/** The bytes a sender signature covers: the context, the sender, the event. */
export function senderBytes(sender: string, eventJson: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`${SENDER_CONTEXT}${sender}\n${eventJson}`);
}

/** The RFC 7638 thumbprint of an Ed25519 public key: the key id web and worker agree on. */
export async function keyIdOf(publicKey: Uint8Array): Promise<string> {
  const x = publicKey.toBase64({ alphabet: "base64url", omitPadding: true });
  const canonical = `{"crv":"Ed25519","kty":"OKP","x":"${x}"}`;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(canonical)));
  return digest.toBase64({ alphabet: "base64url", omitPadding: true });
}

/** One ERR_CONFIG line about a key setting; never quotes the key. */
export function keyError(setting: string, what: string): AppError {
  return new AppError("ERR_CONFIG", `${setting}: ${what}`);
}

/** Public keys by key id. */
export interface VerifyKeys {
  ids: string[];
  /** True when `sig` is `kid`'s signature of `bytes`; false for an unknown kid. */
  verify(
    kid: string,
    sig: Uint8Array<ArrayBuffer>,
    bytes: Uint8Array<ArrayBuffer>,
  ): Promise<boolean>;
  has(kid: string): boolean;
}

/** Imports public keys (EVENT_VERIFY_KEYS, web's own); throws one ERR_CONFIG line. */
export async function importVerifyKeys(
  sources: readonly VerifyKeySource[],
  setting = "EVENT_VERIFY_KEYS (--event-verify-keys)",
): Promise<VerifyKeys> {
  const byId = new Map<string, CryptoKey>();
  for (const [i, source] of sources.entries()) {
    try {
      const key = await crypto.subtle.importKey("raw", source.raw, "Ed25519", false, ["verify"]);
      byId.set(await keyIdOf(source.raw), key);
    } catch {
      throw keyError(setting, `key ${i + 1} cannot be imported as an Ed25519 public key`);
    }
  }
  return {
    ids: [...byId.keys()],
    has: (kid) => byId.has(kid),
    async verify(kid, sig, bytes) {
      const key = byId.get(kid);
      if (!key) return false;
      try {
        return await crypto.subtle.verify("Ed25519", key, sig, bytes);
      } catch {
        return false;
      }
    },
  };
}

// ---- Reading messages ----

/** A channel message split into its event and, when signed, its signature. */
export type OpenedMessage =
  | { signed: false; event: string }
  | { signed: true; event: string; kid: string; rep: string; sig: Uint8Array<ArrayBuffer> };

const sameKeys = (keys: string[], expected: string[]) =>
  keys.length === expected.length && expected.every((k) => keys.includes(k));

function malformedMessage(what: string): AppError {
  return new AppError("ERR_EVENT_INVALID", `signed message is malformed: ${what}`);
}

/**
 * Tells a signed message from an unsigned one. Anything that is not a JSON
 * object carrying a signature member is unsigned (the event parser judges
 * it); a message that carries one must be exactly the envelope, or it throws.
 */
export function openMessage(raw: string): OpenedMessage {
  const malformed = malformedMessage;
  // Bounded before any parsing: web's messages, signed or not, are a few KiB at most.
  if (raw.length > MAX_SIGNED_MESSAGE) {
    throw new AppError("ERR_EVENT_INVALID", `message is longer than ${MAX_SIGNED_MESSAGE} bytes`);
  }
  let value: JsonValue;
  try {
    value = parseStrictJson(raw);
  } catch {
    return { signed: false, event: raw };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { signed: false, event: raw };
  }
  const keys = Object.keys(value);
  if (!keys.some((k) => k === "sig" || k === "kid")) return { signed: false, event: raw };
  if (!sameKeys(keys, ENVELOPE_KEYS)) {
    throw malformed('members must be exactly "event", "kid", "rep" and "sig"');
  }
  const { event, kid, rep, sig } = value;
  if (typeof event !== "string") throw malformed('"event" must be a string');
  if (typeof kid !== "string" || !KEY_ID.test(kid)) throw malformed('"kid" is not a key id');
  if (typeof rep !== "string" || !REPOSITORY.test(rep)) {
    throw malformed('"rep" is not a repository hash');
  }
  if (typeof sig !== "string" || !SIGNATURE.test(sig)) {
    throw malformed('"sig" is not a base64url Ed25519 signature');
  }
  return {
    signed: true,
    event,
    kid,
    rep,
    sig: Uint8Array.fromBase64(sig, { alphabet: "base64url" }),
  };
}

/** A stream entry's sender field, split (its signature is checked by the worker's verifier). */
export function openSenderField(raw: string): { sender: string; ssig: Uint8Array<ArrayBuffer> } {
  if (raw.length > MAX_SENDER_FIELD) throw malformedMessage("sender field is too long");
  let value: JsonValue;
  try {
    value = parseStrictJson(raw);
  } catch {
    throw malformedMessage("sender field is not JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw malformedMessage("sender field is not a JSON object");
  }
  if (!sameKeys(Object.keys(value), SENDER_KEYS)) {
    throw malformedMessage('sender field members must be exactly "sender" and "ssig"');
  }
  const { sender, ssig } = value;
  if (typeof sender !== "string") throw malformedMessage('"sender" must be a string');
  if (typeof ssig !== "string" || !SIGNATURE.test(ssig)) {
    throw malformedMessage('"ssig" is not a base64url Ed25519 signature');
  }
  return { sender, ssig: Uint8Array.fromBase64(ssig, { alphabet: "base64url" }) };
}

/** The stream entry's sender field web writes beside a signed message. */
export function encodeSenderField(sender: string, ssig: string): string {
  return JSON.stringify({ sender, ssig });
}

/** The envelope web publishes for a signed event. */
export function encodeEnvelope(event: string, kid: string, rep: string, sig: string): string {
  return JSON.stringify({ event, kid, rep, sig });
}
