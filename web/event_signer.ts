/**
 * Web's side of event signatures: signs each event message for the posting
 * repository with EVENT_SIGNING_KEY (node:crypto's one-shot Ed25519), and
 * checks a status binding's signature before trusting the binding. The bytes
 * signed and the envelope are the shared contract (shared/event_signature.ts).
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, sign as signFast } from "node:crypto";
import { encodeEventMessage } from "../shared/event.ts";
import type { SigningKeySource } from "../shared/event_keys.ts";
import {
  encodeEnvelope,
  KEY_ID,
  keyError,
  keyIdOf,
  REPOSITORY,
  SIGNATURE,
  signedBytes,
  type VerifyKeys,
} from "../shared/event_signature.ts";

const encoder = new TextEncoder();

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
        message: encodeEnvelope(eventJson, keyId, repository, sig),
        kid: keyId,
        sig,
      });
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
