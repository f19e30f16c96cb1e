/**
 * Verification of GitHub Actions OIDC tokens: RS256 signature by one of the
 * issuer's published keys (web/rs256.ts; WebCrypto for a key outside its terms), exact issuer, exact audience, required exp/iat/jti,
 * clock tolerance and a bound on token age. The token is untrusted until this
 * returns. Its encoded parts and claim values never go into an error message;
 * only the header's alg and kid do, shortened, because they name which key and
 * algorithm were asked for (public facts an operator needs) and are not secret.
 */

import { base64url, errors, type JWTPayload, UnsecuredJWT } from "jose";
import { AppError } from "../shared/errors.ts";
import { jsonErrorPosition } from "../lib/error_text.ts";
import { AuthError, claimDenial, Reason } from "./reasons.ts";
import { type JsonValue, parseStrictJson } from "../lib/strict_json.ts";
import type { KeyStore } from "./jwks.ts";
import { type Rs256Key, rs256KeyFromJwk, verifyRs256 } from "./rs256.ts";

/** The GitHub claims authorization looks at; IDs are strings, as GitHub sends them. */
export interface GitHubClaims extends JWTPayload {
  jti: string;
  iat: number;
  exp: number;
  sub?: string;
  repository?: unknown;
  repository_id?: unknown;
  repository_owner?: unknown;
  repository_owner_id?: unknown;
  ref?: unknown;
  event_name?: unknown;
  environment?: unknown;
  workflow_ref?: unknown;
  job_workflow_ref?: unknown;
}

/** Options for createTokenVerifier. */
export interface TokenVerifierOptions {
  issuer: string;
  audience: string;
  keys: KeyStore;
  clockToleranceMs: number;
  maxTokenAgeMs: number;
  now?: () => number;
}

/** Verifies one bearer token; resolves to its claims or throws AuthError / ERR_AUTH_UNAVAILABLE. */
export type TokenVerifier = (token: string) => Promise<GitHubClaims>;

/** Longest token accepted before any parsing (GitHub's are about 1-2 KiB). */
export const MAX_TOKEN_LENGTH = 8192;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
// Security: header parameters that name keys or key locations. jose never
// fetches them when given a key, but a token carrying them is not GitHub's.
const KEY_HEADERS = ["jku", "x5u", "jwk", "x5c"];
// Security: crit names extensions the verifier must understand, and b64=false
// (RFC 7797) signs the payload unencoded; GitHub uses neither, so both are refused.
const UNSUPPORTED_HEADERS = ["crit", "b64"];
// The claims go through jose's own claim checks as an unsecured JWT once the
// signature has been checked here (jose's jwtVerify would check it with
// WebCrypto, five times slower): same checks, same errors.
const VERIFIED_HEADER = base64url.encode('{"alg":"none"}');
const encoder = new TextEncoder();
// decode() without { stream: true } keeps no state between calls: one decoder serves every segment.
const UTF8 = new TextDecoder("utf-8", { fatal: true });

// Each issuer key in the form web/rs256.ts takes, read once from the CryptoKey
// the key store holds; undefined (WebCrypto verifies) for a key outside its terms.
const fastKeys = new WeakMap<CryptoKey, Promise<Rs256Key | undefined>>();
function fastKey(key: CryptoKey): Promise<Rs256Key | undefined> {
  let found = fastKeys.get(key);
  if (!found) {
    found = crypto.subtle.exportKey("jwk", key).then(rs256KeyFromJwk, () => undefined);
    fastKeys.set(key, found);
  }
  return found;
}

/** Checks the RS256 signature of a compact JWS; throws AuthError when it does not verify. */
async function checkSignature(token: string, key: CryptoKey): Promise<void> {
  const dot = token.lastIndexOf(".");
  let signature: Uint8Array;
  try {
    signature = base64url.decode(token.slice(dot + 1));
  } catch {
    throw new AuthError(Reason.invalid_token, "token rejected by verifier (ERR_JWS_INVALID)");
  }
  const input = encoder.encode(token.slice(0, dot));
  const fast = await fastKey(key);
  const valid = fast
    ? verifyRs256(fast, input, signature)
    : await crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, signature as BufferSource, input);
  if (!valid) throw new AuthError(Reason.bad_signature, "signature does not verify");
}

type JsonObject = { [key: string]: JsonValue };

/**
 * Decodes one base64url JWS segment and reads it with the duplicate-rejecting
 * reader. Security: JSON.parse (and so jose) keeps the last of two members with
 * one name; a header or claims set that says two things is refused instead, so
 * what we check and what any other reader of the token sees cannot differ
 * (RFC 7515 §4 and RFC 7519 §4: names MUST be unique).
 */
function decodeSegment(segment: string, what: "header" | "claims"): JsonObject {
  let text: string;
  try {
    text = UTF8.decode(base64url.decode(segment));
  } catch {
    throw new AuthError(Reason.malformed, `token ${what} is not base64url-encoded UTF-8`);
  }
  let value: JsonValue;
  try {
    value = parseStrictJson(text);
  } catch (err) {
    // Position only: the text is token content.
    const where = jsonErrorPosition(err);
    if (err instanceof Error && err.message.startsWith("duplicate key")) {
      throw new AuthError(`duplicate_${what}_member`, `token ${what} repeats a member${where}`);
    }
    throw new AuthError(Reason.malformed, `token ${what} is not valid JSON${where}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new AuthError(Reason.malformed, `token ${what} is not a JSON object`);
  }
  return value;
}

// Security: JSON numbers as large as 1e400 read as Infinity, which passes every
// comparison jose makes for exp and nbf. GitHub sends whole seconds.
const NUMERIC_DATES = ["exp", "iat", "nbf"] as const;

function checkNumericDates(claims: JsonObject): void {
  for (const name of NUMERIC_DATES) {
    const value = claims[name];
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new AuthError(`claim_${name}`, `${name} is not a finite NumericDate`);
    }
  }
}

function mapJoseError(err: unknown): AuthError {
  if (err instanceof errors.JWTExpired) {
    // jose reports the maxTokenAge bound as an expiry of the iat claim.
    if (err.claim === "iat") {
      return new AuthError(Reason.claim_iat, "token is older than the maximum token age");
    }
    return new AuthError(Reason.expired, "token has expired");
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    return new AuthError(claimDenial(err.claim), `claim ${err.claim} rejected: ${err.reason}`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return new AuthError(Reason.bad_signature, "signature does not verify");
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return new AuthError(Reason.alg_not_allowed, "algorithm not allowed");
  }
  const code = (err as { code?: string }).code ?? "unknown";
  return new AuthError(Reason.invalid_token, `token rejected by verifier (${code})`);
}

/** Creates a verifier for one issuer and audience. */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const now = options.now ?? Date.now;
  return async (token) => {
    if (token.length > MAX_TOKEN_LENGTH) throw new AuthError(Reason.malformed, "token is too long");
    if (!COMPACT_JWS.test(token)) {
      throw new AuthError(Reason.malformed, "token is not a compact JWS");
    }
    const [headerPart, claimsPart] = token.split(".");
    const header = decodeSegment(headerPart, "header");
    checkNumericDates(decodeSegment(claimsPart, "claims"));
    if (header.alg !== "RS256") {
      throw new AuthError(
        Reason.alg_not_allowed,
        `algorithm ${String(header.alg).slice(0, 20)} is not RS256`,
      );
    }
    const keyHeader = KEY_HEADERS.find((name) => Object.hasOwn(header, name));
    if (keyHeader) {
      throw new AuthError(Reason.untrusted_header_key, `token header carries ${keyHeader}`);
    }
    const unsupported = UNSUPPORTED_HEADERS.find((name) => Object.hasOwn(header, name));
    if (unsupported) {
      throw new AuthError(Reason.unsupported_header, `token header carries ${unsupported}`);
    }
    if (typeof header.kid !== "string" || header.kid === "" || header.kid.length > 256) {
      throw new AuthError(Reason.missing_kid, "token header has no usable kid");
    }
    const key = await options.keys.getKey(header.kid);
    if (!key) {
      throw new AuthError(
        Reason.unknown_kid,
        `no published key has kid ${JSON.stringify(header.kid.slice(0, 80))}`,
      );
    }

    await checkSignature(token, key);
    let payload: JWTPayload;
    try {
      ({ payload } = UnsecuredJWT.decode(`${VERIFIED_HEADER}.${claimsPart}.`, {
        issuer: options.issuer,
        audience: options.audience,
        clockTolerance: Math.round(options.clockToleranceMs / 1000),
        maxTokenAge: Math.round(options.maxTokenAgeMs / 1000),
        currentDate: new Date(now()),
        requiredClaims: ["iss", "aud", "exp", "iat", "jti"],
      }));
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw mapJoseError(err);
    }
    // Security: jose accepts an aud array that merely contains ours; a token
    // minted for several audiences is not one minted for us.
    const aud = payload.aud;
    const exact = aud === options.audience ||
      (Array.isArray(aud) && aud.length === 1 && aud[0] === options.audience);
    if (!exact) throw new AuthError(Reason.claim_aud, "aud is not exactly the configured audience");
    if (typeof payload.jti !== "string" || payload.jti === "" || payload.jti.length > 256) {
      throw new AuthError(Reason.claim_jti, "jti is missing or not a string");
    }
    return payload as GitHubClaims;
  };
}
