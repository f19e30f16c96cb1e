/**
 * The issuer's signing keys: discovery document → jwks_uri → RS256 keys,
 * cached by kid. Refetches when a kid is unknown or the cache is old, but never
 * more than once per cooldown, so a flood of tokens with made-up kids cannot
 * hammer the issuer. Trusts only the configured issuer URL; everything fetched
 * is validated: jwks_uri on the issuer's origin, no redirects, at most 256 KiB
 * per document, each request (body included) within the timeout, strict JSON
 * (no repeated members), RSA keys of at least 2048 bits. Errors say what was
 * wrong and where, never quote a document (a misconfigured issuer could serve
 * private key material).
 */

import { base64url, importJWK, type JWK } from "jose";
import { AppError } from "../shared/errors.ts";
import { describeError, jsonErrorPosition } from "../lib/error_text.ts";
import { isLoopbackHost } from "../lib/setting_values.ts";
import { parseStrictJson } from "../lib/strict_json.ts";

/** Options for createKeyStore. */
export interface KeyStoreOptions {
  issuer: string;
  fetch?: typeof fetch;
  /** Milliseconds since the epoch. */
  now?: () => number;
  cooldownMs: number;
  ttlMs: number;
  timeoutMs: number;
  /** Called once per HTTP request to the issuer, for metrics and logs. */
  onFetch?: (outcome: { url: string; ok: boolean; error?: string }) => void;
}

/** Resolves signing keys by kid. */
export interface KeyStore {
  /** The key for `kid`, or undefined when the issuer does not publish it. Throws ERR_AUTH_UNAVAILABLE. */
  getKey(kid: string): Promise<CryptoKey | undefined>;
  /** Loads the keys when none are cached (respecting the cooldown); false when none can be had. */
  ready(): Promise<boolean>;
}

const MAX_DOCUMENT_BYTES = 256 * 1024;
const MIN_RSA_MODULUS_BITS = 2048;

async function readLimited(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_DOCUMENT_BYTES) {
      await reader.cancel();
      throw new Error(`response is larger than ${MAX_DOCUMENT_BYTES} bytes`);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.length;
  }
  return new TextDecoder("utf-8", { fatal: true }).decode(all);
}

/** Bit length of an RSA modulus given as base64url (RFC 7518 §6.3.1.1); 0 when unreadable. */
export function modulusBits(n: string): number {
  let bytes: Uint8Array;
  try {
    bytes = base64url.decode(n);
  } catch {
    return 0;
  }
  // Leading zero bytes (which RFC 7518 forbids but some encoders emit) add no bits.
  let first = 0;
  while (first < bytes.length && bytes[first] === 0) first++;
  if (first === bytes.length) return 0;
  return (bytes.length - first - 1) * 8 + (32 - Math.clz32(bytes[first]));
}

/** Parses a fetched document; the error names a position, never the text. */
function parseDocument(text: string): Record<string, unknown> {
  let body;
  try {
    body = parseStrictJson(text);
  } catch (err) {
    const what = err instanceof Error && err.message.startsWith("duplicate key")
      ? "repeats a member"
      : "is not valid JSON";
    throw new Error(`document ${what}${jsonErrorPosition(err)}`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new Error("not a JSON object");
  }
  return body;
}

/** Creates the key store for one issuer. */
export function createKeyStore(options: KeyStoreOptions): KeyStore {
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const issuerUrl = new URL(options.issuer);
  let keys = new Map<string, CryptoKey>();
  let loadedAt = -Infinity;
  let lastAttempt = -Infinity;
  let inflight: Promise<void> | undefined;

  const getJson = async (url: string): Promise<Record<string, unknown>> => {
    try {
      // Security: redirects are refused so the issuer's host cannot hand key
      // distribution to another origin.
      const response = await doFetch(url, {
        redirect: "error",
        signal: AbortSignal.timeout(options.timeoutMs),
        headers: { accept: "application/json" },
      });
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new Error(`HTTP ${response.status}`);
      }
      const body = parseDocument(await readLimited(response));
      options.onFetch?.({ url, ok: true });
      return body;
    } catch (err) {
      options.onFetch?.({ url, ok: false, error: describeError(err) });
      throw new Error(`fetching ${url} failed: ${describeError(err)}`, { cause: err });
    }
  };

  const checkJwksUri = (value: unknown): string => {
    if (typeof value !== "string") throw new Error("discovery document has no jwks_uri");
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new Error("discovery document's jwks_uri is not a URL");
    }
    // Security: keys must come from the issuer's own origin (GitHub and GHES both do).
    if (url.origin !== issuerUrl.origin) {
      throw new Error(`jwks_uri on ${url.origin.slice(0, 200)} is not on the issuer's origin`);
    }
    if (url.protocol !== "https:" && !isLoopbackHost(url.hostname)) {
      throw new Error("jwks_uri must use https");
    }
    return url.href;
  };

  const load = async (): Promise<void> => {
    const base = options.issuer.replace(/\/+$/, "");
    const discovery = await getJson(`${base}/.well-known/openid-configuration`);
    if (discovery.issuer !== options.issuer) {
      throw new Error("discovery document names a different issuer");
    }
    const jwks = await getJson(checkJwksUri(discovery.jwks_uri));
    if (!Array.isArray(jwks.keys)) throw new Error("JWKS has no keys array");
    const next = new Map<string, CryptoKey>();
    for (const jwk of jwks.keys as JWK[]) {
      if (!jwk || typeof jwk !== "object" || jwk.kty !== "RSA") continue;
      if (typeof jwk.kid !== "string" || jwk.kid === "" || next.has(jwk.kid)) continue;
      if (jwk.alg !== undefined && jwk.alg !== "RS256") continue;
      if (jwk.use !== undefined && jwk.use !== "sig") continue;
      if (typeof jwk.n !== "string" || modulusBits(jwk.n) < MIN_RSA_MODULUS_BITS) continue;
      try {
        const key = await importJWK({ kty: "RSA", n: jwk.n, e: jwk.e }, "RS256");
        next.set(jwk.kid, key as CryptoKey);
      } catch {
        // A malformed key is skipped; the others stay usable.
      }
    }
    if (next.size === 0) throw new Error("JWKS holds no usable RS256 key");
    keys = next;
    loadedAt = now();
  };

  // Single flight: concurrent callers share one refresh; the cooldown counts
  // from the start of every attempt, failed or not.
  const refresh = (): Promise<boolean> => {
    if (!inflight) {
      if (now() - lastAttempt < options.cooldownMs) return Promise.resolve(false);
      lastAttempt = now();
      inflight = load().finally(() => inflight = undefined);
    }
    return inflight.then(() => true);
  };

  const unavailable = (err: unknown) =>
    new AppError("ERR_AUTH_UNAVAILABLE", `issuer keys unavailable: ${describeError(err)}`, {
      cause: err,
    });

  return {
    async getKey(kid) {
      const fresh = now() - loadedAt < options.ttlMs;
      if (keys.has(kid) && fresh) return keys.get(kid);
      try {
        await refresh();
      } catch (err) {
        // Stale keys keep working while the issuer is unreachable.
        if (keys.has(kid)) return keys.get(kid);
        if (keys.size === 0) throw unavailable(err);
        return undefined;
      }
      if (keys.size === 0) {
        throw unavailable(new Error("no keys loaded yet (refetch cooling down)"));
      }
      return keys.get(kid);
    },
    async ready() {
      if (keys.size > 0) return true;
      try {
        await refresh();
      } catch {
        return false;
      }
      return keys.size > 0;
    },
  };
}
