/**
 * The Ed25519 key settings as operators give them: EVENT_SIGNING_KEY (web's
 * private key) and EVENT_VERIFY_KEYS (the public keys workers trust), as PEM
 * or JWK. Synchronous, so they run in the settings table; web imports the
 * private key and workers the public ones once, at startup. Key material is
 * secret or at least long: errors name the setting's expected shape, never
 * its value.
 */

import { type JsonValue, parseStrictJson } from "../lib/strict_json.ts";

/** Most verify keys one setting may hold (rotation needs two). */
export const MAX_VERIFY_KEYS = 8;

const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;
const ED25519_OID = [0x06, 0x03, 0x2b, 0x65, 0x70];
// SubjectPublicKeyInfo of Ed25519 (RFC 8410): this header, then the 32-byte key.
const SPKI_HEADER = [0x30, 0x2a, 0x30, 0x05, ...ED25519_OID, 0x03, 0x21, 0x00];

/** A private key as given, checked for shape; imported once at startup by createSigner. */
export type SigningKeySource =
  | { format: "pkcs8"; der: Uint8Array<ArrayBuffer> }
  | { format: "jwk"; d: string; x: string };

/** One public key as given: the 32 raw bytes, whatever the format. */
export interface VerifyKeySource {
  raw: Uint8Array<ArrayBuffer>;
}

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

/** REPORT_VERIFY_KEYS as given: each cluster's public keys (more than one while rotating). */
export type ClusterKeySources = Map<string, VerifyKeySource[]>;

const SPKI_BASE64 = /^[A-Za-z0-9+/]{59}=$/;

/** One public key on one line: the SPKI DER in base64 (a PEM's body line) or a JWK's `x`. */
function publicKeyLine(value: string): VerifyKeySource {
  if (B64URL_32.test(value)) {
    return { raw: Uint8Array.fromBase64(value, { alphabet: "base64url" }) };
  }
  if (SPKI_BASE64.test(value)) {
    const der = Uint8Array.fromBase64(value);
    if (der.length === 44 && startsWith(der, SPKI_HEADER)) return { raw: der.slice(12) };
  }
  throw new Error(
    "is not an Ed25519 public key: give the line between a PEM's BEGIN and END lines (openssl pkey -pubout) or a JWK's x",
  );
}

/**
 * Parses REPORT_VERIFY_KEYS: entries `<cluster>=<public key>` separated by
 * commas or white space; a cluster named twice has two keys (rotation). The
 * same key for two clusters is refused: each cluster signs with its own, or
 * one cluster could speak for the other. Errors say which entry, never its text.
 */
export function parseClusterKeys(
  raw: string,
  clusterName: (name: string) => string,
): ClusterKeySources {
  const value = raw.trim();
  const keys: ClusterKeySources = new Map();
  if (value === "") return keys;
  if (value.includes("PRIVATE KEY")) {
    throw new Error("holds a private key: give web only each cluster's public half");
  }
  const owner = new Map<string, string>();
  for (const [i, entry] of value.split(/[\s,]+/).entries()) {
    const at = entry.indexOf("=");
    if (at <= 0 || at === entry.length - 1) {
      throw new Error(`entry ${i + 1} is not <cluster>=<public key>`);
    }
    let name: string;
    let key: VerifyKeySource;
    try {
      name = clusterName(entry.slice(0, at));
      key = publicKeyLine(entry.slice(at + 1));
    } catch (err) {
      throw new Error(`entry ${i + 1}: ${(err as Error).message}`);
    }
    const id = key.raw.toBase64();
    const holder = owner.get(id);
    if (holder !== undefined && holder !== name) {
      throw new Error(`entry ${i + 1} gives cluster ${name} the key of cluster ${holder}`);
    }
    owner.set(id, name);
    const list = keys.get(name) ?? [];
    if (holder === undefined) list.push(key);
    if (list.length > MAX_VERIFY_KEYS) {
      throw new Error(`cluster ${name} has more than ${MAX_VERIFY_KEYS} keys`);
    }
    keys.set(name, list);
  }
  if (keys.size > 1000) throw new Error(`names ${keys.size} clusters; at most 1000`);
  return keys;
}
