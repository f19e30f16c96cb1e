/**
 * Web's side of event signatures: signs each event message for the posting
 * repository with EVENT_SIGNING_KEY (shared/signing_key.ts), and checks a
 * status binding's signatures before trusting the binding. The bytes
 * signed and the envelope are the shared contract (shared/event_signature.ts).
 */

import { encodeEventMessage } from "../shared/event.ts";
import type { SigningKeySource } from "../shared/event_keys.ts";
import {
  encodeEnvelope,
  encodeSenderField,
  KEY_ID,
  REPOSITORY,
  senderBytes,
  SIGNATURE,
  signedBytes,
  type VerifyKeys,
} from "../shared/event_signature.ts";
import { importSigningKey } from "../shared/signing_key.ts";

const encoder = new TextEncoder();

/** Domain separation prefix of the signature over an event's cluster list. */
export const CLUSTERS_CONTEXT = "kuberollouttrigger clusters v1\n";

/**
 * The bytes a binding's `csig` covers: the context, the event id, the clusters
 * in code-unit order (the publish script sorts them in Lua, whose order may
 * follow Valkey's locale: both sides sort here instead).
 */
export function clusterListBytes(
  eventId: string,
  clusters: readonly string[],
): Uint8Array<ArrayBuffer> {
  const sorted = JSON.stringify([...clusters].sort());
  return encoder.encode(`${CLUSTERS_CONTEXT}${eventId}\n${sorted}`);
}

/** Signs events (message and status binding at once) with web's key. */
export interface EventSigner {
  /** The key id every signature names. */
  keyId: string;
  /** The raw public key (web also verifies its own bindings with it). */
  publicKey: Uint8Array<ArrayBuffer>;
  /**
   * Signs the encoded event for the posting repository's hash: the message to
   * publish, and the `kid` and `sig` its status binding stores. With `sender`
   * (shared/event_sender.ts's encoding) also the sender field that travels
   * beside the message, signed with the event, for clusters that decide who
   * may restart what.
   */
  signEvent(eventJson: string, repository: string, sender?: string): Promise<SignedEvent>;
  /**
   * Signs the clusters an event waits for, as its binding stores them (`csig`):
   * with signed reports, Valkey write access must not drop a cluster from an
   * event and so make a green answer of the others' reports.
   */
  signClusters(eventId: string, clusters: readonly string[]): string;
}

/** One signed event: the exact bytes to publish and the binding's signature members. */
export interface SignedEvent extends BindingSignature {
  message: string;
  /** With a sender: the stream entry's sender field (shared/event_signature.ts). */
  senderField?: string;
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
  const key = await importSigningKey(source, setting);
  return {
    keyId: key.keyId,
    publicKey: key.publicKey,
    // Signing is synchronous; the contract stays a promise (a refusal is a rejection).
    signEvent(eventJson, repository, sender) {
      if (!REPOSITORY.test(repository)) {
        return Promise.reject(new Error("repository must be a sha256 hex hash"));
      }
      const sig = key.sign(signedBytes(repository, eventJson));
      const message = encodeEnvelope(eventJson, key.keyId, repository, sig);
      if (sender === undefined) return Promise.resolve({ message, kid: key.keyId, sig });
      const senderField = encodeSenderField(sender, key.sign(senderBytes(sender, eventJson)));
      return Promise.resolve({ message, kid: key.keyId, sig, senderField });
    },
    signClusters: (eventId, clusters) => key.sign(clusterListBytes(eventId, clusters)),
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

/**
 * Checks a binding's `csig`: web's signature (the binding's `kid`) of the
 * clusters the event waits for. Missing or altered lists fail.
 */
export async function verifyClusterList(
  keys: VerifyKeys,
  eventId: string,
  binding: { clusters: readonly string[]; kid?: string; csig?: string },
): Promise<boolean> {
  if (binding.kid === undefined || binding.csig === undefined) return false;
  if (!KEY_ID.test(binding.kid) || !SIGNATURE.test(binding.csig)) return false;
  const sig = Uint8Array.fromBase64(binding.csig, { alphabet: "base64url" });
  return await keys.verify(
    binding.kid,
    sig,
    clusterListBytes(eventId, binding.clusters),
  );
}
