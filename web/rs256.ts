/**
 * RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature verification, verify only,
 * for the issuer's public keys: RFC 8017 §8.2.2 with the comparison of step 4
 * done on the whole encoding. Deno's WebCrypto RSA costs 120–150 µs per verify
 * here; this costs about a fifth of that (docs/performance.md). Why it is sound
 * and how it is checked against crypto.subtle: docs/security.md, "RS256".
 *
 * Security: every input is public (the issuer's key, the token's bytes), so
 * BigInt arithmetic, whose timing depends on its operands, leaks nothing. The
 * decrypted block is never parsed: the one encoding a valid signature can have
 * is built from the message and compared as a whole number, so no padding or
 * DigestInfo variant (Bleichenbacher 2006, lenient ASN.1 readers) can pass.
 */

import { createHash } from "node:crypto";

/** An RSA public key in the form this verifier takes. */
export interface Rs256Key {
  /** Modulus. */
  n: bigint;
  /** Octet length of the modulus (k in RFC 8017). */
  k: number;
}

/** Smallest modulus accepted, as for every other key path (web/jwks.ts). */
export const MIN_MODULUS_BITS = 2048;
/** Largest modulus accepted: GitHub's are 2048 bits; beyond this a verify would cost too much. */
export const MAX_MODULUS_BITS = 8192;
// The only public exponent this verifier takes (what every issuer of OIDC
// tokens we know uses); keys with another stay on WebCrypto.
const E = 65537n;
// DER of DigestInfo { AlgorithmIdentifier { id-sha256, NULL }, OCTET STRING (32) }:
// the prefix RFC 8017 §9.2 note 1 gives for SHA-256.
const SHA256_DIGEST_INFO = "3031300d060960864801650304020105000420";

/** OS2IP (RFC 8017 §4.2): big-endian bytes as a non-negative integer. */
function os2ip(bytes: Uint8Array): bigint {
  // toHex is native: two lowercase hex digits per byte, most significant first.
  return bytes.length === 0 ? 0n : BigInt("0x" + bytes.toHex());
}

function decodeBase64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "==".slice(0, (4 - (b64.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * The key for this verifier from a JWK's n and e, or undefined when the key is
 * outside its terms: e other than 65537, a modulus under 2048 or over 8192
 * bits, or even (no RSA modulus is). Leading zero bytes of n add nothing.
 */
export function rs256KeyFromJwk(jwk: { n?: unknown; e?: unknown }): Rs256Key | undefined {
  if (typeof jwk.n !== "string" || typeof jwk.e !== "string") return undefined;
  const nBytes = decodeBase64url(jwk.n);
  const eBytes = decodeBase64url(jwk.e);
  if (!nBytes || !eBytes) return undefined;
  if (os2ip(eBytes) !== E) return undefined;
  const n = os2ip(nBytes);
  const bits = n.toString(2).length;
  if (n === 0n || bits < MIN_MODULUS_BITS || bits > MAX_MODULUS_BITS || (n & 1n) === 0n) {
    return undefined;
  }
  return { n, k: Math.ceil(bits / 8) };
}

/** s^65537 mod n: sixteen squarings and one multiplication. */
function rsavp1(s: bigint, n: bigint): bigint {
  let x = s;
  for (let i = 0; i < 16; i++) x = (x * x) % n;
  return (x * s) % n;
}

// Octets of DigestInfo and of the SHA-256 hash H at the end of the encoding.
const DIGEST_INFO_OCTETS = SHA256_DIGEST_INFO.length / 2;
const HASH_OCTETS = 32;
// Per modulus length k: 0x00 0x01 PS 0x00 DigestInfo followed by 32 zero octets,
// the encoding with H left out. At most one per k between 256 and 1024 octets.
const encodingsWithoutHash = new Map<number, bigint>();

function encodingWithoutHash(k: number): bigint {
  let found = encodingsWithoutHash.get(k);
  if (found === undefined) {
    // k ≥ 256 (2048 bits), so the padding is far above the 8 octets the RFC requires.
    const ps = "ff".repeat(k - 3 - DIGEST_INFO_OCTETS - HASH_OCTETS);
    found = BigInt("0x0001" + ps + "00" + SHA256_DIGEST_INFO + "00".repeat(HASH_OCTETS));
    encodingsWithoutHash.set(k, found);
  }
  return found;
}

/**
 * EMSA-PKCS1-v1_5-ENCODE (RFC 8017 §9.2) of the message for SHA-256 into k
 * octets, as an integer: 0x00 0x01 0xFF…0xFF 0x00 DigestInfo H. H fills the
 * last 32 octets, which are zero in the rest, so adding it is appending it.
 */
function expectedEncoding(message: Uint8Array, k: number): bigint {
  const h = BigInt("0x" + createHash("sha256").update(message).digest("hex"));
  return encodingWithoutHash(k) + h;
}

/**
 * RSASSA-PKCS1-v1_5-VERIFY with SHA-256 (RFC 8017 §8.2.2): true only when the
 * signature is exactly k octets, is below n as an integer, and its RSA
 * verification primitive equals the one encoding of this message.
 */
export function verifyRs256(key: Rs256Key, message: Uint8Array, signature: Uint8Array): boolean {
  // Step 1: length check.
  if (signature.length !== key.k) return false;
  // Step 2a–b: s in [0, n-1] (RSAVP1 step 1 refuses anything else).
  const s = os2ip(signature);
  if (s >= key.n) return false;
  const m = rsavp1(s, key.n);
  // Steps 2c–4: m < n < 2^(8k), so comparing m with the expected encoding as
  // integers is comparing the two k-octet strings, all of them at once.
  return m === expectedEncoding(message, key.k);
}
