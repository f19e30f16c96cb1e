/**
 * An Ed25519 private key imported once at startup, checked, and ready to sign
 * bytes: web signs events and bindings with EVENT_SIGNING_KEY, each worker
 * cluster signs its reports with REPORT_SIGNING_KEY. Per signature,
 * node:crypto's one-shot Ed25519 costs about half the CPU of
 * crypto.subtle.sign, which also hops to a worker thread and back (measured in
 * `deno task bench --signing-only`). Errors name the setting, never the key.
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, sign as signFast } from "node:crypto";
import type { SigningKeySource } from "./event_keys.ts";
import { keyError, keyIdOf } from "./event_signature.ts";

const encoder = new TextEncoder();

/** A private key ready to sign. */
export interface SigningKey {
  /** RFC 7638 thumbprint of the public half: the `kid` every signature names. */
  keyId: string;
  /** The raw public key. */
  publicKey: Uint8Array<ArrayBuffer>;
  /** The Ed25519 signature of `bytes`, base64url without padding (86 characters). */
  sign(bytes: Uint8Array): string;
}

/** Imports a parsed key setting; throws one ERR_CONFIG line naming `setting`, never the key. */
export async function importSigningKey(
  source: SigningKeySource,
  setting: string,
): Promise<SigningKey> {
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
    fastKey = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
  } catch {
    throw keyError(setting, "cannot be imported as an Ed25519 private key (PKCS#8 PEM or JWK)");
  }
  // WebCrypto derives the public half from "d"; a JWK's own "x" that differs from it would
  // have verifiers configured with a key nobody signs with, and everything dropped.
  if (
    source.format === "jwk" &&
    source.x !== publicKey.toBase64({ alphabet: "base64url", omitPadding: true })
  ) {
    throw keyError(setting, 'is a JWK whose "x" is not the public half of its "d"');
  }
  // One signature made as every later one will be, checked by WebCrypto against the public
  // half the key id is derived from: two implementations that disagree would sign with one key
  // and name another, and every verifier would drop everything. Stop here instead.
  const check = encoder.encode("kuberollouttrigger signer check");
  const checkKey = await crypto.subtle.importKey("raw", publicKey, "Ed25519", false, ["verify"]);
  const checkSig = new Uint8Array(signFast(null, check, fastKey));
  if (!(await crypto.subtle.verify("Ed25519", checkKey, checkSig, check))) {
    throw keyError(setting, "signs with a key that is not the public half it names");
  }
  return {
    keyId: await keyIdOf(publicKey),
    publicKey,
    sign: (bytes) =>
      signFast(null, bytes, fastKey).toBase64({ alphabet: "base64url", omitPadding: true }),
  };
}
