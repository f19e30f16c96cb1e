/**
 * Ephemeral Ed25519 key pairs for tests and `deno task dev`, in the forms an
 * operator gives them: PKCS#8 / SPKI PEM (as `openssl genpkey` and
 * `openssl pkey -pubout` write them) and JWK. Never persisted.
 */

/** One key pair in every accepted form. */
export interface TestKeyPair {
  privatePem: string;
  publicPem: string;
  privateJwk: string;
  publicJwk: string;
  /** The public key on one line, as REPORT_VERIFY_KEYS takes it (the SPKI PEM's body). */
  publicLine: string;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = new Uint8Array(der).toBase64();
  const lines = b64.match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN ${label}-----\n${lines}\n-----END ${label}-----\n`;
}

/** Generates a fresh key pair. */
export async function generateKeyPair(): Promise<TestKeyPair> {
  const pair = await crypto.subtle.generateKey("Ed25519", true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const spki = await crypto.subtle.exportKey("spki", pair.publicKey);
  return {
    privatePem: pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", pair.privateKey)),
    publicPem: pem("PUBLIC KEY", spki),
    privateJwk: JSON.stringify({ kty: "OKP", crv: "Ed25519", d: jwk.d, x: jwk.x }),
    publicJwk: JSON.stringify({ kty: "OKP", crv: "Ed25519", x: jwk.x }),
    publicLine: new Uint8Array(spki).toBase64(),
  };
}
