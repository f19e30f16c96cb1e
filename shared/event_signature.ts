/**
 * Signed channel messages and status bindings (Ed25519, RFC 8032: node:crypto
 * signs, WebCrypto verifies). Web signs the exact bytes of each event message
 * and names its key id; workers holding verify keys drop whatever does not
 * verify, is outside the time window or was seen before, so write access to
 * Valkey alone cannot restart anything.
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
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, sign as signFast } from "node:crypto";
import { AppError } from "./errors.ts";
import { encodeEventMessage, type EventMessage } from "./event.ts";
import { type JsonValue, parseStrictJson } from "../lib/strict_json.ts";

/** Domain separation prefix of an event signature. */
export const EVENT_CONTEXT = "kuberollouttrigger event v1\n";
/** How far ahead of the worker's clock a message's time may be (clock skew). */
export const FUTURE_SKEW_MS = 30_000;
/** Most verify keys one setting may hold (rotation needs two). */
export const MAX_VERIFY_KEYS = 8;
/** Longest channel message read at all; web's are well under 8 KiB. */
export const MAX_SIGNED_MESSAGE = 32_768;

const KEY_ID = /^[A-Za-z0-9_-]{43}$/;
const SIGNATURE = /^[A-Za-z0-9_-]{86}$/;
const REPOSITORY = /^[0-9a-f]{64}$/;
const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;
const ED25519_OID = [0x06, 0x03, 0x2b, 0x65, 0x70];
// SubjectPublicKeyInfo of Ed25519 (RFC 8410): this header, then the 32-byte key.
const SPKI_HEADER = [0x30, 0x2a, 0x30, 0x05, ...ED25519_OID, 0x03, 0x21, 0x00];
const ENVELOPE_KEYS = ["event", "kid", "rep", "sig"];
const encoder = new TextEncoder();

/** A private key as given, checked for shape; imported once at startup by createSigner. */
export type SigningKeySource =
  | { format: "pkcs8"; der: Uint8Array<ArrayBuffer> }
  | { format: "jwk"; d: string; x: string };

/** One public key as given: the 32 raw bytes, whatever the format. */
export interface VerifyKeySource {
  raw: Uint8Array<ArrayBuffer>;
}

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

// ---- Parsing key settings (synchronous: they run in the settings table) ----

interface PemBlock {
  label: string;
  der: Uint8Array<ArrayBuffer>;
}

function readPemBlocks(raw: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]{1,40})-----([\s\S]*?)-----END ([A-Z0-9 ]{1,40})-----/g;
  let rest = raw;
  for (const m of raw.matchAll(re)) {
    if (m[1] !== m[3]) throw new Error("a PEM block's BEGIN and END lines do not match");
    const body = m[2].replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new Error("a PEM block is not base64");
    let der: Uint8Array<ArrayBuffer>;
    try {
      der = Uint8Array.fromBase64(body);
    } catch {
      throw new Error("a PEM block is not base64");
    }
    blocks.push({ label: m[1], der });
    rest = rest.replace(m[0], "");
  }
  if (rest.trim() !== "") throw new Error("holds text outside its PEM blocks");
  return blocks;
}

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return prefix.every((b, i) => bytes[i] === b);
}

function containsOid(der: Uint8Array): boolean {
  for (let i = 0; i + ED25519_OID.length <= Math.min(der.length, 24); i++) {
    if (ED25519_OID.every((b, j) => der[i + j] === b)) return true;
  }
  return false;
}

function readJwkObject(raw: string): Record<string, JsonValue> {
  let value: JsonValue;
  try {
    value = parseStrictJson(raw);
  } catch {
    // Security: the parser's message may quote the key; say only what was expected.
    throw new Error("is neither PEM nor valid JSON (a JWK)");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error("is JSON but not a JWK object");
  }
  return value;
}

function okpMembers(jwk: Record<string, JsonValue>): void {
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519") {
    throw new Error('is a JWK but not an Ed25519 key (kty "OKP", crv "Ed25519")');
  }
  if (typeof jwk.x !== "string" || !B64URL_32.test(jwk.x)) {
    throw new Error('is a JWK whose "x" is not a 32-byte base64url public key');
  }
}

/** Parses EVENT_SIGNING_KEY: a PKCS#8 PEM ("PRIVATE KEY") or a private JWK of Ed25519. */
export function parseSigningKey(raw: string): SigningKeySource | undefined {
  const value = raw.trim();
  if (value === "") return undefined;
  if (value.startsWith("-----")) {
    const blocks = readPemBlocks(value);
    if (blocks.length !== 1) throw new Error("must hold exactly one PEM block");
    const [{ label, der }] = blocks;
    if (label === "ENCRYPTED PRIVATE KEY") {
      throw new Error("is an encrypted key: give it unencrypted (keep it in a Secret)");
    }
    if (label === "PUBLIC KEY") {
      throw new Error(
        "is a public key: web signs with the private key (openssl genpkey -algorithm ed25519)",
      );
    }
    if (label !== "PRIVATE KEY") {
      throw new Error('must be a PKCS#8 PEM ("BEGIN PRIVATE KEY"), e.g. from openssl genpkey');
    }
    if (der[0] !== 0x30 || der.length < 46 || der.length > 128 || !containsOid(der)) {
      throw new Error(
        "is a PKCS#8 key but not an Ed25519 one (openssl genpkey -algorithm ed25519)",
      );
    }
    return { format: "pkcs8", der };
  }
  const jwk = readJwkObject(value);
  okpMembers(jwk);
  if (typeof jwk.d !== "string" || !B64URL_32.test(jwk.d)) {
    throw new Error('is a JWK without a private "d": web needs the private key');
  }
  return { format: "jwk", d: jwk.d, x: jwk.x as string };
}

function publicFromJwk(jwk: Record<string, JsonValue>): VerifyKeySource {
  okpMembers(jwk);
  if (jwk.d !== undefined) {
    throw new Error('holds a private JWK ("d"): give workers only the public half');
  }
  return { raw: Uint8Array.fromBase64(jwk.x as string, { alphabet: "base64url" }) };
}

/**
 * Parses EVENT_VERIFY_KEYS: one or more SPKI PEM blocks ("PUBLIC KEY"), or a
 * JWK, or a JWK Set ({"keys":[…]}). The same key given twice counts once.
 */
export function parseVerifyKeys(raw: string): VerifyKeySource[] {
  const value = raw.trim();
  if (value === "") return [];
  let keys: VerifyKeySource[];
  if (value.startsWith("-----")) {
    keys = readPemBlocks(value).map(({ label, der }) => {
      if (label.includes("PRIVATE KEY")) {
        throw new Error(
          "holds a private key: give workers only the public half (openssl pkey -pubout)",
        );
      }
      if (label !== "PUBLIC KEY") {
        throw new Error('must hold PEM blocks of "BEGIN PUBLIC KEY" (openssl pkey -pubout)');
      }
      if (der.length !== 44 || !startsWith(der, SPKI_HEADER)) {
        throw new Error("holds a public key that is not Ed25519");
      }
      return { raw: der.slice(12) };
    });
  } else {
    const jwk = readJwkObject(value);
    if (jwk.keys !== undefined) {
      if (!Array.isArray(jwk.keys)) throw new Error('is a JWK Set whose "keys" is not a list');
      keys = jwk.keys.map((k) => {
        if (k === null || typeof k !== "object" || Array.isArray(k)) {
          throw new Error("is a JWK Set with an entry that is not a JWK");
        }
        return publicFromJwk(k);
      });
    } else keys = [publicFromJwk(jwk)];
  }
  const unique = keys.filter((k, i) =>
    keys.findIndex((o) => o.raw.every((b, j) => b === k.raw[j])) === i
  );
  if (unique.length === 0) throw new Error("holds no key");
  if (unique.length > MAX_VERIFY_KEYS) throw new Error(`may hold at most ${MAX_VERIFY_KEYS} keys`);
  return unique;
}

// ---- Importing keys (once, at startup) ----

/** The RFC 7638 thumbprint of an Ed25519 public key: the key id web and worker agree on. */
export async function keyIdOf(publicKey: Uint8Array): Promise<string> {
  const x = publicKey.toBase64({ alphabet: "base64url", omitPadding: true });
  const canonical = `{"crv":"Ed25519","kty":"OKP","x":"${x}"}`;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(canonical)));
  return digest.toBase64({ alphabet: "base64url", omitPadding: true });
}

function keyError(setting: string, what: string): AppError {
  return new AppError("ERR_CONFIG", `${setting}: ${what}`);
}

/** Signs events (message and status binding at once) with web's key. */
export interface EventSigner {
  /** The key id every signature names. */
  keyId: string;
  /** The raw public key (web also verifies its own bindings with it). */
  publicKey: Uint8Array<ArrayBuffer>;
  /**
   * Signs the encoded event for the posting repository's hash: the message to
   * publish, and the `kid` and `sig` its status binding stores.
   */
  signEvent(eventJson: string, repository: string): Promise<SignedEvent>;
}

/** One signed event: the exact bytes to publish and the binding's signature members. */
export interface SignedEvent extends BindingSignature {
  message: string;
}

/** What a status binding holds of its event besides the id. */
export interface BindingFields {
  repository: string;
  image: string;
  tags: readonly string[];
  time: string;
}

/** The signature members stored in a status binding. */
export interface BindingSignature {
  kid: string;
  sig: string;
}

function signedBytes(repository: string, eventJson: string): Uint8Array<ArrayBuffer> {
  // The hash has a fixed length and alphabet: nothing can move across the newline.
  return encoder.encode(`${EVENT_CONTEXT}${repository}\n${eventJson}`);
}

/** Imports EVENT_SIGNING_KEY; throws one ERR_CONFIG line that never quotes the key. */
export async function createSigner(
  source: SigningKeySource,
  setting = "EVENT_SIGNING_KEY (--event-signing-key)",
): Promise<EventSigner> {
  let publicKey: Uint8Array<ArrayBuffer>;
  let fastKey: KeyObject;
  try {
    // Extractable only for this moment, to learn the public half.
    const probe = source.format === "pkcs8"
      ? await crypto.subtle.importKey("pkcs8", source.der, "Ed25519", true, ["sign"])
      : await crypto.subtle.importKey(
        "jwk",
        { kty: "OKP", crv: "Ed25519", d: source.d, x: source.x },
        "Ed25519",
        true,
        ["sign"],
      );
    const jwk = await crypto.subtle.exportKey("jwk", probe);
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", probe));
    publicKey = Uint8Array.fromBase64(jwk.x!, { alphabet: "base64url" });
    // Per event, node:crypto's one-shot Ed25519 signs in about half the CPU of
    // crypto.subtle.sign, which also hops to a worker thread and back (measured in
    // `deno task bench --signing-only`). It derives the public half from the seed itself.
    fastKey = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
  } catch {
    throw keyError(setting, "cannot be imported as an Ed25519 private key (PKCS#8 PEM or JWK)");
  }
  // WebCrypto derives the public half from "d"; a JWK's own "x" that differs from it would have
  // workers configured with a key web never signs with, and every event dropped.
  if (
    source.format === "jwk" &&
    source.x !== publicKey.toBase64({ alphabet: "base64url", omitPadding: true })
  ) {
    throw keyError(setting, 'is a JWK whose "x" is not the public half of its "d"');
  }
  // One signature made as every event's will be, checked by WebCrypto against the public half
  // the key id is derived from: two implementations that disagree would sign with one key and
  // name another, and every worker would drop every event. Stop here instead.
  const check = encoder.encode("kuberollouttrigger signer check");
  const checkKey = await crypto.subtle.importKey("raw", publicKey, "Ed25519", false, ["verify"]);
  const checkSig = new Uint8Array(signFast(null, check, fastKey));
  if (!(await crypto.subtle.verify("Ed25519", checkKey, checkSig, check))) {
    throw keyError(setting, "signs with a key that is not the public half it names");
  }
  const keyId = await keyIdOf(publicKey);
  return {
    keyId,
    publicKey,
    // Signing is synchronous now; the contract stays a promise (a refusal is a rejection).
    signEvent(eventJson, repository) {
      if (!REPOSITORY.test(repository)) {
        return Promise.reject(new Error("repository must be a sha256 hex hash"));
      }
      const bytes = signedBytes(repository, eventJson);
      const sig = signFast(null, bytes, fastKey)
        .toBase64({ alphabet: "base64url", omitPadding: true });
      return Promise.resolve({
        message: JSON.stringify({ event: eventJson, kid: keyId, rep: repository, sig }),
        kid: keyId,
        sig,
      });
    },
  };
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

// ---- Reading messages and bindings ----

/** A channel message split into its event and, when signed, its signature. */
export type OpenedMessage =
  | { signed: false; event: string }
  | { signed: true; event: string; kid: string; rep: string; sig: Uint8Array<ArrayBuffer> };

/**
 * Tells a signed message from an unsigned one. Anything that is not a JSON
 * object carrying a signature member is unsigned (the event parser judges
 * it); a message that carries one must be exactly the envelope, or it throws.
 */
export function openMessage(raw: string): OpenedMessage {
  const malformed = (what: string) =>
    new AppError("ERR_EVENT_INVALID", `signed message is malformed: ${what}`);
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
  if (keys.length !== ENVELOPE_KEYS.length || !ENVELOPE_KEYS.every((k) => keys.includes(k))) {
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

/** The outcome of checking a message: the event text to parse, or why it is dropped. */
export type CheckedMessage =
  | { ok: true; event: string; keyId?: string }
  | { ok: false; reason: DropReason; detail: string };

/** The outcome of admitting a parsed event. */
export type Admission = { ok: true } | { ok: false; reason: DropReason; detail: string };

/** The worker's decisions on channel messages. */
export interface EventVerifier {
  /** True when verify keys are set: unsigned messages are dropped. */
  enforcing: boolean;
  keyIds: string[];
  /** Step 1, before the event is parsed: the envelope and its signature. */
  check(raw: string): Promise<CheckedMessage>;
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
    async check(raw) {
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
      return { ok: true, event: opened.event, keyId: opened.kid };
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

/**
 * Checks a status binding: its `sig` must be web's signature of the event it
 * describes (rebuilt from the id and the binding's fields) for its repository.
 * Unsigned, altered or foreign bindings fail.
 */
export async function verifyBinding(
  keys: VerifyKeys,
  eventId: string,
  binding: BindingFields & { kid?: string; sig?: string },
): Promise<boolean> {
  if (binding.kid === undefined || binding.sig === undefined) return false;
  if (!KEY_ID.test(binding.kid) || !SIGNATURE.test(binding.sig)) return false;
  if (!REPOSITORY.test(binding.repository)) return false;
  const { image, tags, time } = binding;
  const eventJson = encodeEventMessage({ id: eventId, time, image, tags: [...tags] });
  const sig = Uint8Array.fromBase64(binding.sig, { alphabet: "base64url" });
  return await keys.verify(binding.kid, sig, signedBytes(binding.repository, eventJson));
}
